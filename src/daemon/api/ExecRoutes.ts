/**
 * The exec routes of the Docker Engine API: creating an exec in a container,
 * starting it detached or attached (over the hijacked connection, with the
 * exec's detach keys: the `101` first, then the process, framed as the start
 * request's `Tty` says), resizing its terminal and inspecting it.
 */
import { Effect, Stream } from "effect"
import { HttpRouter } from "effect/http"
import { Engine } from "../Engine.ts"
import { ExecConfig, ExecStartConfig } from "../Model.ts"
import { parseDetachKeys } from "./DetachKeys.ts"
import { orBadRequest } from "../DockerError.ts"
import { decodeBody, empty, json, pathParam, terminalSize } from "./Request.ts"
import { respondAttached } from "./Streams.ts"

/** The exec routes, over the `Engine`. */
export const execRoutes = Effect.gen(function*() {
  const engine = yield* Engine
  return [
    HttpRouter.route(
      "POST",
      "/containers/:id/exec",
      Effect.gen(function*() {
        const id = yield* pathParam("id")
        const config = yield* decodeBody(ExecConfig)
        // Bad keys are refused when the exec is made, as dockerd does, not when it is started.
        yield* orBadRequest(parseDetachKeys(config.DetachKeys ?? undefined))
        return json(yield* engine.execCreate(id, config), 201)
      })
    ),
    HttpRouter.route(
      "POST",
      "/exec/:id/start",
      Effect.gen(function*() {
        const id = yield* pathParam("id")
        const config = yield* decodeBody(ExecStartConfig)
        if (config.Detach === true) return yield* Effect.as(engine.execStart(id, { detach: true }), empty(200))
        // As dockerd: the checks of ExecExists answer the request; the start itself comes after the 101.
        yield* engine.execStartable(id)
        const detachKeys = yield* Effect.flatMap(engine.execInspect(id), (exec) => orBadRequest(parseDetachKeys(exec.DetachKeys)))
        const open = Effect.map(engine.execStart(id, { detach: false }), ({ exited, session }) => ({
          ...session,
          // The CLI asks for the exit code when the stream ends: end it only after the exit is known.
          output: Stream.concat(session.output, Stream.fromEffectDrain(exited))
        }))
        // Framed unless the *start* asks for a terminal (dockerd's execStartCheck.Tty), whatever the exec was made with.
        return yield* respondAttached(open, { multiplexed: config.Tty !== true, routerHeaders: true, detachKeys })
      })
    ),
    HttpRouter.route(
      "POST",
      "/exec/:id/resize",
      Effect.gen(function*() {
        const id = yield* pathParam("id")
        const { height, width } = yield* terminalSize
        yield* engine.execResize(id, height, width)
        return empty(200)
      })
    ),
    HttpRouter.route("GET", "/exec/:id/json", Effect.flatMap(pathParam("id"), (id) => Effect.map(engine.execInspect(id), (body) => json(body))))
  ] as const
})
