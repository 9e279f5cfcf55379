/**
 * A container record with nothing behind it: no image, snapshot or real spec.
 * containerd reaches a task's shim only through a record of the task's id, so
 * a task whose container is gone (a removal that raced a start, a record
 * deleted behind our back) is killed and deleted through one of these.
 */
import { OciSpecTypeUrl, packJson } from "../domain/Any.ts"
import type { Container } from "../gen/containerd/services/containers/v1/containers.ts"

/** The record to create for task `id`, with `labels` (a placeholder mark) and the shim's runtime. */
export const bareRecord = (
  id: string,
  labels: Readonly<Record<string, string>> = {},
  runtime = "io.containerd.runc.v2"
): Partial<Container> & { readonly id: string } => ({
  id,
  labels: { ...labels },
  runtime: { name: runtime, options: undefined },
  spec: packJson(OciSpecTypeUrl, {}),
  extensions: {},
  image: "",
  snapshotter: "",
  snapshotKey: ""
})
