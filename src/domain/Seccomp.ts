/**
 * Seccomp: the OCI spec's `linux.seccomp`, Docker's default profile, and
 * Docker's profile format (`--security-opt seccomp=<file>`) turned into it.
 *
 * The default is Docker's (moby `profiles/seccomp/default.json`, as dockerd 20.10
 * writes it into the spec; containerd's `contrib/seccomp` has the same lists):
 * everything refused with EPERM but an allow list, plus syscalls allowed only on
 * some architectures, only from some kernel, or only when the container holds a
 * capability (`CAP_SYS_ADMIN` allows mount, unshare, setns, clone with new
 * namespaces…). Without `CAP_SYS_ADMIN`, `clone` may not create namespaces and
 * `clone3` answers ENOSYS so that libcs fall back to `clone`. The lists are data
 * here (space-separated, to keep them compact); which entries apply is decided
 * by `defaultProfile` from the container's capabilities.
 */
import { Result, Schema } from "effect"

const Action = Schema.Literals([
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_LOG",
  "SCMP_ACT_NOTIFY"
])

const Operator = Schema.Literals([
  "SCMP_CMP_NE",
  "SCMP_CMP_LT",
  "SCMP_CMP_LE",
  "SCMP_CMP_EQ",
  "SCMP_CMP_GE",
  "SCMP_CMP_GT",
  "SCMP_CMP_MASKED_EQ"
])

/** A condition on one argument of a syscall. */
export const SyscallArg = Schema.Struct({
  index: Schema.Int,
  value: Schema.Number,
  valueTwo: Schema.optional(Schema.Number),
  op: Operator
})
export type SyscallArg = typeof SyscallArg.Type

/** A rule of the OCI spec: what these syscalls do (under these conditions). */
export const Syscall = Schema.Struct({
  names: Schema.Array(Schema.String),
  action: Action,
  errnoRet: Schema.optional(Schema.Int),
  args: Schema.optional(Schema.Array(SyscallArg))
})
export type Syscall = typeof Syscall.Type

/** The OCI spec's `linux.seccomp`. */
export const LinuxSeccomp = Schema.Struct({
  defaultAction: Action,
  defaultErrnoRet: Schema.optional(Schema.Int),
  architectures: Schema.optional(Schema.Array(Schema.String)),
  flags: Schema.optional(Schema.Array(Schema.String)),
  listenerPath: Schema.optional(Schema.String),
  listenerMetadata: Schema.optional(Schema.String),
  syscalls: Schema.optional(Schema.Array(Syscall))
})
export type LinuxSeccomp = typeof LinuxSeccomp.Type

/** Where a profile is applied: the CPU architecture (Node's `process.arch`), the kernel, the capabilities. */
export interface Target {
  readonly arch: string
  /** major, minor */
  readonly kernel: readonly [number, number]
  /** The container's bounding set. */
  readonly capabilities: ReadonlyArray<string>
}

/** libseccomp's architectures of each Node.js `process.arch`, native first (Docker's `archMap`). */
const ARCHES: Readonly<Record<string, ReadonlyArray<string>>> = {
  x64: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  ia32: ["SCMP_ARCH_X86"],
  arm64: ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
  arm: ["SCMP_ARCH_ARM"],
  s390x: ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
  ppc64: ["SCMP_ARCH_PPC64LE"],
  riscv64: ["SCMP_ARCH_RISCV64"]
}

/** The names Docker's profiles use for architectures in `includes`/`excludes` (Go's GOARCH). */
const GOARCH: Readonly<Record<string, string>> = {
  x64: "amd64",
  ia32: "386",
  arm64: "arm64",
  arm: "arm",
  s390x: "s390x",
  ppc64: "ppc64le",
  riscv64: "riscv64"
}

const words = (text: string): ReadonlyArray<string> => text.trim().split(/\s+/)

/** What every container may call. */
const ALLOWED = words(`
  accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
  clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
  clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
  epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
  execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
  fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
  fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
  futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
  getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
  getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
  getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
  inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
  io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
  io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
  lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
  madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
  mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
  mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
  nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 poll
  ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
  pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
  recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
  rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
  rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
  sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
  sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
  sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64
  sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
  setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
  setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
  setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socket
  socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range
  syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
  timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
  timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
  utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
`)

/** The personality(2) domains a container may switch to: Linux, its 32-bit flavour, UNAME26, and the query. */
const PERSONALITIES = [0x0, 0x0008, 0x20000, 0x20008, 0xffffffff]

/** Syscalls only some architectures have (by GOARCH, as Docker's `includes.arches`). */
const BY_ARCH: ReadonlyArray<readonly [ReadonlyArray<string>, ReadonlyArray<string>]> = [
  [["amd64"], ["arch_prctl"]],
  [["amd64", "386"], ["modify_ldt"]],
  [["arm", "arm64"], words("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls")],
  [["ppc64le"], words("sync_file_range2 swapcontext")],
  [["s390x"], words("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr")],
  [["riscv64"], ["riscv_flush_icache"]]
]

type ByCapability = ReadonlyArray<readonly [string, ReadonlyArray<string>]>

/** Syscalls a capability in the bounding set allows, in Docker's order: these two before the rules for the lack of CAP_SYS_ADMIN… */
const BY_CAPABILITY_FIRST: ByCapability = [
  ["CAP_DAC_READ_SEARCH", ["open_by_handle_at"]],
  ["CAP_SYS_ADMIN", words(`
    bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
    move_mount name_to_handle_at open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname
    setns syslog umount umount2 unshare`)]
]

/** …and these after them. */
const BY_CAPABILITY_THEN: ByCapability = [
  ["CAP_SYS_BOOT", ["reboot"]],
  ["CAP_SYS_CHROOT", ["chroot"]],
  ["CAP_SYS_MODULE", words("delete_module init_module finit_module")],
  ["CAP_SYS_PACCT", ["acct"]],
  ["CAP_SYS_PTRACE", words("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace")],
  ["CAP_SYS_RAWIO", words("iopl ioperm")],
  ["CAP_SYS_TIME", words("settimeofday stime clock_settime")],
  ["CAP_SYS_TTY_CONFIG", ["vhangup"]],
  ["CAP_SYS_NICE", words("get_mempolicy mbind set_mempolicy")],
  ["CAP_SYSLOG", ["syslog"]],
  // Capabilities dockerd 20.10 does not know; later Dockers allow these with them.
  ["CAP_BPF", ["bpf"]],
  ["CAP_PERFMON", ["perf_event_open"]]
]

/** CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000
const ENOSYS = 38

const allow = (names: ReadonlyArray<string>, args?: ReadonlyArray<SyscallArg>): Syscall =>
  args === undefined ? { names, action: "SCMP_ACT_ALLOW" } : { names, action: "SCMP_ACT_ALLOW", args }

const atLeast = (kernel: readonly [number, number], major: number, minor: number): boolean =>
  kernel[0] > major || (kernel[0] === major && kernel[1] >= minor)

/** Docker's default profile for a container with these capabilities on this architecture and kernel. */
export const defaultProfile = (target: Target): LinuxSeccomp => {
  const goarch = GOARCH[target.arch] ?? target.arch
  const has = (capability: string) => target.capabilities.includes(capability)
  const admin = has("CAP_SYS_ADMIN")
  const byCapability = (rules: ByCapability) => rules.filter(([capability]) => has(capability)).map(([, names]) => allow(names))
  // The namespace flags are clone's first argument, but its second on s390.
  const cloneRule = allow(["clone"], [{ index: goarch === "s390x" ? 1 : 0, value: CLONE_NAMESPACE_FLAGS, op: "SCMP_CMP_MASKED_EQ" }])
  const withoutAdmin: ReadonlyArray<Syscall> = admin
    ? []
    : [cloneRule, { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS }]
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    architectures: ARCHES[target.arch] ?? [],
    syscalls: [
      allow(ALLOWED),
      // ptrace is safe from 4.8 on, where seccomp is checked again after a tracer's changes.
      ...(atLeast(target.kernel, 4, 8) ? [allow(["ptrace"])] : []),
      ...PERSONALITIES.map((value) => allow(["personality"], [{ index: 0, value, op: "SCMP_CMP_EQ" }])),
      ...BY_ARCH.filter(([arches]) => arches.includes(goarch)).map(([, names]) => allow(names)),
      ...byCapability(BY_CAPABILITY_FIRST),
      ...withoutAdmin,
      ...byCapability(BY_CAPABILITY_THEN)
    ]
  }
}

// Docker's profile format (moby `profiles/seccomp/seccomp.go`): the OCI rules plus `name`, `archMap` and the filters.
const Filter = Schema.Struct({
  arches: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  caps: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  minKernel: Schema.optional(Schema.NullOr(Schema.String))
})
type Filter = typeof Filter.Type

const DockerSyscall = Schema.Struct({
  name: Schema.optional(Schema.String),
  names: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  action: Action,
  errnoRet: Schema.optional(Schema.NullOr(Schema.Int)),
  args: Schema.optional(Schema.NullOr(Schema.Array(SyscallArg))),
  includes: Schema.optional(Schema.NullOr(Filter)),
  excludes: Schema.optional(Schema.NullOr(Filter))
})

const DockerProfile = Schema.Struct({
  defaultAction: Action,
  defaultErrnoRet: Schema.optional(Schema.NullOr(Schema.Int)),
  architectures: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  archMap: Schema.optional(Schema.NullOr(Schema.Array(Schema.Struct({
    architecture: Schema.String,
    subArchitectures: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
  })))),
  flags: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  listenerPath: Schema.optional(Schema.NullOr(Schema.String)),
  listenerMetadata: Schema.optional(Schema.NullOr(Schema.String)),
  syscalls: Schema.optional(Schema.NullOr(Schema.Array(DockerSyscall)))
})

const decodeProfile = Schema.decodeUnknownResult(Schema.fromJsonString(DockerProfile))

const parseKernel = (text: string): readonly [number, number] | undefined => {
  const match = /^(\d+)\.(\d+)$/.exec(text)
  return match === null ? undefined : [Number(match[1]), Number(match[2])]
}

/** Whether a rule's `includes` (all must hold) and `excludes` (none may) let it apply to `target`. */
const applies = (target: Target, includes: Filter | null | undefined, excludes: Filter | null | undefined): boolean => {
  const goarch = GOARCH[target.arch] ?? target.arch
  const kernelAtLeast = (text: string) => {
    const version = parseKernel(text)
    return version !== undefined && atLeast(target.kernel, version[0], version[1])
  }
  if (includes?.arches && includes.arches.length > 0 && !includes.arches.includes(goarch)) return false
  if (includes?.caps && !includes.caps.every((c) => target.capabilities.includes(c))) return false
  if (includes?.minKernel && !kernelAtLeast(includes.minKernel)) return false
  if (excludes?.arches && excludes.arches.includes(goarch)) return false
  if (excludes?.caps && excludes.caps.some((c) => target.capabilities.includes(c))) return false
  if (excludes?.minKernel && kernelAtLeast(excludes.minKernel)) return false
  return true
}

/**
 * A profile in Docker's format (the JSON the docker CLI reads from the file and
 * sends in `SecurityOpt`) for `target`, as moby's `setupSeccomp`: the native
 * architecture's `archMap` entry, the rules whose filters apply. Fails with
 * dockerd's message when the JSON or the profile is wrong.
 */
export const fromDockerProfile = (json: string, target: Target): Result.Result<LinuxSeccomp, string> => {
  const decoded = decodeProfile(json)
  if (Result.isFailure(decoded)) return Result.fail(`Decoding seccomp profile failed: ${decoded.failure.message}`)
  const profile = decoded.success
  if ((profile.architectures?.length ?? 0) > 0 && (profile.archMap?.length ?? 0) > 0) {
    return Result.fail("'architectures' and 'archMap' were specified in the seccomp profile, use either 'architectures' or 'archMap'")
  }
  const native = ARCHES[target.arch]?.[0]
  const mapped = (profile.archMap ?? []).filter((entry) => entry.architecture === native)
  const architectures = mapped.length > 0
    ? mapped.flatMap((entry) => [entry.architecture, ...(entry.subArchitectures ?? [])])
    : profile.architectures ?? []
  const syscalls: Array<Syscall> = []
  for (const rule of profile.syscalls ?? []) {
    if (rule.name !== undefined && (rule.names?.length ?? 0) > 0) {
      return Result.fail("'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'")
    }
    if (!applies(target, rule.includes, rule.excludes)) continue
    const names = rule.name !== undefined ? [rule.name] : rule.names ?? []
    syscalls.push({
      names,
      action: rule.action,
      ...(rule.errnoRet === undefined || rule.errnoRet === null ? {} : { errnoRet: rule.errnoRet }),
      ...(rule.args ? { args: rule.args } : {})
    })
  }
  return Result.succeed({
    defaultAction: profile.defaultAction,
    ...(profile.defaultErrnoRet === undefined || profile.defaultErrnoRet === null ? {} : { defaultErrnoRet: profile.defaultErrnoRet }),
    ...(architectures.length > 0 ? { architectures } : {}),
    ...(profile.flags ? { flags: profile.flags } : {}),
    ...(profile.listenerPath ? { listenerPath: profile.listenerPath } : {}),
    ...(profile.listenerMetadata ? { listenerMetadata: profile.listenerMetadata } : {}),
    syscalls
  })
}
