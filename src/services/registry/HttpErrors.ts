/**
 * A registry's failures as `RegistryError` reasons: a request that could not
 * be sent or got no answer in time, and an answer with an unwanted status
 * (with the registry's own words from its error body, as the distribution
 * spec lays it out), mapped as containerd's resolver does.
 */
import { Cause, Duration, Effect } from "effect"
import type { HttpClientError, HttpClientResponse } from "effect/http"
import {
  DeadlineExceeded,
  NotFound,
  registryError,
  ResourceExhausted,
  Unauthorized,
  Unavailable,
  Unknown
} from "../../domain/RegistryError.ts"

/** Maps a transport failure or timeout of a request to the reason it failed for. */
export const transportError = (timeout: Duration.Duration, label: string, domain: string, what: string) =>
(error: HttpClientError.HttpClientError | Cause.TimeoutError) =>
  Cause.isTimeoutError(error)
    ? registryError(DeadlineExceeded, label, `${what}: no response from ${domain} within ${Duration.format(timeout)}`)
    : registryError(
      error.reason._tag === "TransportError" ? Unavailable : Unknown,
      label,
      `${what}: cannot reach ${domain}: ${describeCause(error)}`,
      { cause: error }
    )

/** The registry's own words from an error body (`{"errors":[{"code","message"}]}`), if any. */
export const registrySays = (timeout: Duration.Duration, response: HttpClientResponse.HttpClientResponse) =>
  response.text.pipe(
    Effect.timeout(timeout),
    Effect.map((text) => {
      try {
        const body = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }
        const said = body.errors?.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ")
        return said ? ` (${said})` : ""
      } catch {
        return text.length > 0 && text.length < 200 ? ` (${text.trim()})` : ""
      }
    }),
    Effect.orElseSucceed(() => "")
  )

/** Turns an unwanted status into the reason it stands for. */
export const statusError = (
  timeout: Duration.Duration,
  label: string,
  domain: string,
  what: string,
  response: HttpClientResponse.HttpClientResponse
) =>
  Effect.map(registrySays(timeout, response), (said) => {
    const status = response.status
    const Reason = status === 404
      ? NotFound
      : status === 401 || status === 403
      ? Unauthorized
      : status === 429
      ? ResourceExhausted
      : status >= 500
      ? Unavailable
      : Unknown
    const message = status >= 300 && status < 400
      ? `${what}: too many redirects (last to ${response.headers.location ?? "nowhere"})`
      : `${what}: ${domain} answered ${status}${said}`
    return registryError(Reason, label, message, { status })
  })

/** The innermost message of an error: the useful one ("connect ECONNREFUSED 127.0.0.1:5000"). */
export const describeCause = (error: unknown): string => {
  let cause: unknown = error
  while (typeof cause === "object" && cause !== null && "cause" in cause && cause.cause !== undefined) cause = cause.cause
  return cause instanceof Error ? cause.message : String(cause)
}
