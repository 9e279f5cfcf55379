/**
 * containerd's rule for labels (`labels.Validate`): a key and its value together
 * may not exceed 4096 bytes, and the key may not be empty. Checked before any call.
 */
import { Effect } from "effect"
import { type ContainerdError, invalidArgument } from "./ContainerdError.ts"

/** The most bytes a label's key and value may take together. */
export const MaxLabelSize = 4096

/** The labels, or InvalidArgument naming the first label that breaks the rule. */
export const validateLabels = (
  method: string,
  labels: Readonly<Record<string, string>>
): Effect.Effect<Readonly<Record<string, string>>, ContainerdError> => {
  for (const [key, value] of Object.entries(labels)) {
    if (key === "") return Effect.fail(invalidArgument(method, "label keys must not be empty"))
    const size = Buffer.byteLength(key) + Buffer.byteLength(value)
    if (size > MaxLabelSize) {
      return Effect.fail(invalidArgument(
        method,
        `label ${JSON.stringify(key.slice(0, 64))} is ${size} bytes: a label's key and value may take at most ${MaxLabelSize}`
      ))
    }
  }
  return Effect.succeed(labels)
}
