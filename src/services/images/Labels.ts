/**
 * The labels containerd and its clients put on content, snapshots, leases and
 * image records (containerd's `labels` and `gc` packages, and the annotations
 * OCI archives name images by), in one place so every pull writes them alike.
 */

/** Label names, and the makers of the per-index and per-snapshotter ones. */
export const Labels = {
  uncompressed: "containerd.io/uncompressed",
  snapshotRef: "containerd.io/snapshot.ref",
  gcSnapshot: (snapshotter: string) => `containerd.io/gc.ref.snapshot.${snapshotter}`,
  gcConfig: "containerd.io/gc.ref.content.config",
  gcLayer: (index: number) => `containerd.io/gc.ref.content.l.${index}`,
  gcManifest: (index: number) => `containerd.io/gc.ref.content.m.${index}`,
  gcExpire: "containerd.io/gc.expire",
  /** Ours, on the leases our pulls and imports write under ("pull"): a program that owns its namespace can find those a crash left. */
  lease: "effect-containerd.io/lease",
  distributionSource: (domain: string) => `containerd.io/distribution.source.${domain}`,
  imageName: "io.containerd.image.name",
  ociRefName: "org.opencontainers.image.ref.name"
} as const
