import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { idle, isPaused, type Phase, status, type TaskStatus, type Transition, transition } from "../../../src/daemon/engine/State.ts"

const paused: Phase = { _tag: "Paused" }
const restarting: Phase = { _tag: "Restarting" }
const removing = (before: Phase = idle): Phase => ({ _tag: "Removing", before })

describe("State", () => {
  it("status: the engine's phase first, then the task's", () => {
    const cases: Array<[TaskStatus, Phase, string]> = [
      [undefined, idle, "dead"],
      ["deleted", idle, "dead"],
      ["created", idle, "created"],
      ["running", idle, "running"],
      ["paused", idle, "paused"],
      ["running", paused, "paused"],
      ["exited", idle, "exited"],
      ["exited", paused, "exited"],
      ["exited", restarting, "restarting"],
      ["running", removing(), "removing"],
      ["paused", removing(paused), "removing"]
    ]
    for (const [task, phase, expected] of cases) assert.strictEqual(status(task, phase), expected, `${task} ${phase._tag}`)
  })

  it("isPaused: by the engine (kept through a removal) or containerd, only while the task is up", () => {
    const cases: Array<[TaskStatus, Phase, boolean]> = [
      ["running", idle, false],
      ["paused", idle, true],
      ["running", paused, true],
      ["running", removing(paused), true],
      ["running", removing(idle), false],
      ["exited", paused, false]
    ]
    for (const [task, phase, expected] of cases) assert.strictEqual(isPaused(task, phase), expected, `${task} ${phase._tag}`)
  })

  it("legal transitions", () => {
    const cases: Array<[TaskStatus, Phase, Transition, Phase]> = [
      ["running", idle, { _tag: "Pause" }, paused],
      ["running", paused, { _tag: "Unpause" }, idle],
      ["paused", idle, { _tag: "Unpause" }, idle],
      ["exited", paused, { _tag: "Exit", restart: false }, idle],
      ["exited", idle, { _tag: "Exit", restart: true }, restarting],
      ["exited", removing(paused), { _tag: "Exit", restart: false }, removing(idle)],
      ["exited", restarting, { _tag: "Start" }, idle],
      ["created", idle, { _tag: "Start" }, idle],
      ["exited", restarting, { _tag: "CancelRestart" }, idle],
      ["running", paused, { _tag: "CancelRestart" }, paused],
      ["running", paused, { _tag: "BeginRemove" }, removing(paused)],
      ["exited", restarting, { _tag: "BeginRemove" }, removing(idle)],
      ["running", removing(paused), { _tag: "AbortRemove" }, paused],
      ["running", idle, { _tag: "AbortRemove" }, idle]
    ]
    for (const [task, phase, step, expected] of cases) {
      assert.deepStrictEqual(transition(task, phase, step), Result.succeed(expected), `${task} ${phase._tag} ${step._tag}`)
    }
  })

  it("illegal transitions are refused with Docker's message", () => {
    const cases: Array<[TaskStatus, Phase, Transition, string]> = [
      ["running", paused, { _tag: "Pause" }, "Container {id} is already paused"],
      ["paused", idle, { _tag: "Pause" }, "Container {id} is already paused"],
      ["exited", idle, { _tag: "Pause" }, "Container {id} is not running"],
      ["exited", restarting, { _tag: "Pause" }, "Container {id} is not running"],
      ["running", idle, { _tag: "Unpause" }, "Container {id} is not paused"],
      ["exited", idle, { _tag: "Unpause" }, "Container {id} is not paused"],
      ["exited", removing(), { _tag: "Start" }, "container is marked for removal and cannot be started"],
      ["exited", removing(), { _tag: "BeginRemove" }, "removal of container {id} is already in progress"]
    ]
    for (const [task, phase, step, message] of cases) {
      assert.deepStrictEqual(transition(task, phase, step), Result.fail(message), `${task} ${phase._tag} ${step._tag}`)
    }
  })
})
