/**
 * The runc shim's options (containerd's `runtime/v2/runc/options.Options`,
 * type URL `containerd.runc.v1.Options`), as much as we set of them: the runc
 * binary, for a runtime a daemon is configured with (dockerd's `--add-runtime
 * name=path`). One string field, written by hand rather than by generating the
 * shim's whole options file.
 */
import { BinaryWriter } from "@bufbuild/protobuf/wire"
import type { Any } from "../gen/google/protobuf/any.ts"

/** The options' type URL, as containerd's typeurl registry names them. */
export const RuncOptionsTypeUrl = "containerd.runc.v1.Options"

/** `binary_name` is field 6 of the message. */
const BINARY_NAME = 6

/** The options that make the shim run `binary` instead of `runc`. */
export const runcOptions = (binary: string): Any => ({
  typeUrl: RuncOptionsTypeUrl,
  value: Buffer.from(new BinaryWriter().uint32((BINARY_NAME << 3) | 2).string(binary).finish())
})
