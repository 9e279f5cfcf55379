import { assert, describe, it } from "@effect/vitest"
import { fromGrpcStatus, GrpcCode, invalidArgument } from "../../src/domain/ContainerdError.ts"

const context = { method: "/containerd.services.tasks.v1.Tasks/Start", address: "unix:///run/x.sock" }

describe("ContainerdError.fromGrpcStatus", () => {
  const expected: ReadonlyArray<readonly [keyof typeof GrpcCode, string, boolean]> = [
    ["OK", "Unknown", false],
    ["CANCELLED", "Canceled", false],
    ["UNKNOWN", "Unknown", false],
    ["INVALID_ARGUMENT", "InvalidArgument", false],
    ["DEADLINE_EXCEEDED", "DeadlineExceeded", true],
    ["NOT_FOUND", "NotFound", false],
    ["ALREADY_EXISTS", "AlreadyExists", false],
    ["PERMISSION_DENIED", "Unknown", false],
    ["RESOURCE_EXHAUSTED", "ResourceExhausted", true],
    ["FAILED_PRECONDITION", "FailedPrecondition", false],
    ["ABORTED", "Unknown", false],
    ["OUT_OF_RANGE", "Unknown", false],
    ["UNIMPLEMENTED", "Unimplemented", false],
    ["INTERNAL", "Unknown", false],
    ["UNAVAILABLE", "Unavailable", true],
    ["DATA_LOSS", "Unknown", false],
    ["UNAUTHENTICATED", "Unknown", false]
  ]

  it("covers every gRPC status code", () => {
    assert.deepStrictEqual(expected.map(([name]) => GrpcCode[name]), Object.values(GrpcCode))
  })

  it.each(expected)("%s becomes %s", (name, tag, retryable) => {
    const error = fromGrpcStatus({ code: GrpcCode[name], details: "task \"web\": boom" }, context)
    assert.strictEqual(error.reason._tag, tag)
    assert.strictEqual(error.reason.code, GrpcCode[name])
    assert.strictEqual(error.reason.method, context.method)
    assert.strictEqual(error.isRetryable, retryable)
    assert.include(error.message, "task \"web\": boom")
    assert.include(error.message, context.method)
  })

  it("an unknown code becomes Unknown and keeps the code", () => {
    const error = fromGrpcStatus({ code: 99, details: "?" }, context)
    assert.strictEqual(error.reason._tag, "Unknown")
    assert.strictEqual(error.reason.code, 99)
  })

  it("Unavailable names the address that was tried", () => {
    const error = fromGrpcStatus({ code: GrpcCode.UNAVAILABLE, details: "connect ENOENT" }, context)
    assert.strictEqual(error.reason._tag === "Unavailable" ? error.reason.address : "", context.address)
    assert.include(error.message, context.address)
  })

  it("our own checks use the same reasons, marked with code -1", () => {
    const error = invalidArgument("containers.create", "id \"a b\" is invalid")
    assert.strictEqual(error.reason._tag, "InvalidArgument")
    assert.strictEqual(error.reason.code, -1)
    assert.strictEqual(error.message, "containers.create: id \"a b\" is invalid")
  })
})
