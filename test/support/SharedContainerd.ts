/**
 * The containerd shared by all test files of a run (started by globalSetup.ts),
 * and helpers to work in a namespace of one's own on it.
 */
import * as crypto from "node:crypto"
import { Effect, Layer } from "effect"
import { inject } from "vitest"
import { Containerd } from "../../src/services/Containerd.ts"
import { importArchive } from "./FixtureImage.ts"

declare module "vitest" {
  export interface ProvidedContext {
    containerd: {
      /** Socket path of the shared daemon. */
      readonly address: string
      /** Its state directory (bundles, shim addresses). */
      readonly state: string
      /** The busybox fixture as an OCI archive. */
      readonly fixtureArchive: string
      /** The fixture's chain ID: the committed snapshot a container's rootfs is prepared on. */
      readonly fixtureChainId: string
    }
  }
}

/** The shared daemon's coordinates. */
export const shared = () => inject("containerd")

/** A namespace no other test uses: `<prefix>-<random>`. */
export const uniqueNamespace = (prefix: string): string => `${prefix}-${crypto.randomBytes(4).toString("hex")}`

/** A client of the shared daemon whose default namespace is `namespace`. */
export const sharedClient = (namespace: string): Layer.Layer<Containerd> =>
  Containerd.layer({ address: shared().address, namespace }).pipe(Layer.orDie)

/** Imports the fixture image into `namespace` of the shared daemon. */
export const importFixture = (namespace: string) =>
  importArchive(shared().address, namespace, shared().fixtureArchive).pipe(Effect.orDie)
