package dev.faultline.snapshot;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadMismatchException;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Caps;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageSourceException;
import dev.faultline.paging.PagingStats;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.sys.HostMemory;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.MemoryPreparer;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import dev.faultline.vmm.VmShell;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.function.Function;

/**
 * Restores a snapshot into a fresh machine and runs it to its end.
 * <ul>
 *   <li><b>eager</b>: every chunk is checked, then all stored pages are written into RAM, then the vCPUs start.</li>
 *   <li><b>lazy</b>: the low 1 MiB (boot tables) is written, the main memslot is made demand-paged
 *       (kvm: registered with userfaultfd; ref: under exit on missing, every page missing) and the vCPUs
 *       start at once; every first touch is served from the snapshot by the paging core
 *       ({@link SnapshotSource}, sequential readahead by default; on ref each vCPU serves its own
 *       memory-fault exit and re-enters). With
 *       {@link Verify#ON_FIRST_TOUCH} a chunk's SHA-256 is checked when its first stored page is
 *       needed; with {@link Verify#UPFRONT} all of them before the machine starts. After the guest
 *       ends, pages it never touched are copied in (so RAM equals the snapshotted guest's).</li>
 * </ul>
 * Everything that can be checked without reading chunk data is checked before any vCPU starts, on
 * a check thread of its own ({@link Checks}): the description ({@link Snapshot#readDescription}:
 * format, sizes, memslots, registers), then the page map, the chunk table and the memory file
 * ({@link Snapshot#open(Path, SnapshotDescription)}), all chunks with {@link Verify#UPFRONT}, and the
 * low 1 MiB's chunk. Meanwhile the calling thread opens the backend and builds the VM with its RAM
 * and memslots for the RAM size the page map's header names ({@link VmShell}); it creates the vCPUs
 * (with the saved registers) only once the description is checked, and starts them only once
 * everything is. A refusal closes whatever was built, never started: no vCPU of a refused snapshot
 * ever entered the guest, and none exists when the description itself is refused.
 */
public final class Restore {
    private Restore() {}

    public enum Mode {
        EAGER, LAZY;

        /** "eager" or "lazy". */
        public String label() { return name().toLowerCase(); }

        /** @throws IllegalArgumentException naming the accepted words */
        public static Mode named(String name) {
            return switch (name) {
                case "lazy" -> LAZY;
                case "eager" -> EAGER;
                default -> throw new IllegalArgumentException("lazy or eager, not '" + name + "'");
            };
        }
    }

    /**
     * Who serves a lazy restore's page faults. {@link #UFFD} (kvm only): userfaultfd handler threads,
     * while the vCPU sleeps in the kernel. {@link #EXIT}: each vCPU serves its own memory-fault exit
     * and re-enters (kvm: RAM under a userfaultfd that fails KVM's own faults; ref: exit on missing,
     * ref's only way).
     */
    public enum Delivery {
        UFFD, EXIT;

        /** "uffd" or "exit", as the command line and the restore service name them. */
        public String label() { return name().toLowerCase(); }

        /** @throws IllegalArgumentException naming the accepted words */
        public static Delivery named(String name) {
            return switch (name) {
                case "uffd" -> UFFD;
                case "exit" -> EXIT;
                default -> throw new IllegalArgumentException("uffd or exit, not '" + name + "'");
            };
        }
    }

    /** When a lazy restore checks chunk SHA-256s (eager restores always check all of them first). */
    public enum Verify {
        UPFRONT, ON_FIRST_TOUCH;

        /** "upfront" or "on-touch", as the command line and the restore service name them. */
        public String label() { return this == UPFRONT ? "upfront" : "on-touch"; }

        /** @throws IllegalArgumentException naming the accepted words */
        public static Verify named(String name) {
            return switch (name) {
                case "upfront" -> UPFRONT;
                case "on-touch" -> ON_FIRST_TOUCH;
                default -> throw new IllegalArgumentException("upfront or on-touch, not '" + name + "'");
            };
        }
    }

    /**
     * The prefetch a restore takes by name: "none", "readahead" ({@link Prefetch#DEFAULT_READAHEAD}) or
     * "replay:FILE" (a working set recorded by an earlier restore of the same snapshot, {@link Recording}).
     * @throws IllegalArgumentException naming the accepted words
     * @throws dev.faultline.paging.PageSourceException for a working-set file that cannot be used
     */
    public static Prefetch prefetchNamed(String name) {
        return Prefetch.parse(name);
    }

    /**
     * Record the guest-physical pages the guest touches (first touch first) in its first {@code millis}
     * (0: its whole run) and write them to {@code file} ({@link dev.faultline.paging.WorkingSet}'s format)
     * after the run, for {@code --prefetch replay:FILE} next time. Every touch must fault to be seen, so
     * the restore runs with prefetch none.
     */
    public record Recording(Path file, long millis) {
        public Recording {
            if (file == null) throw new IllegalArgumentException("a recording needs a file");
            if (millis < 0) throw new IllegalArgumentException("a recording window is 0 (whole run) or positive, not " + millis + " ms");
        }
    }

    /**
     * @param backend  "kvm", "ref" or "auto"
     * @param handlers userfaultfd handler threads (lazy, {@link Delivery#UFFD})
     * @param backends opens a backend by name ({@link Backends#open}; tests count the calls)
     * @param shells   where the VM shell comes from ({@link Shells#NONE}: built during the restore)
     * @param delivery who serves a lazy restore's faults; null: the backend's own (kvm uffd, ref exit)
     */
    public record Options(String backend, Mode mode, Verify verify, Prefetch prefetch, int handlers, Duration timeout,
                          Function<String, Hypervisor> backends, Shells shells, Delivery delivery, Recording recording, Path uffdHandler,
                          Observer observer) {
        public Options(String backend, Mode mode, Verify verify, Prefetch prefetch, int handlers, Duration timeout,
                       Function<String, Hypervisor> backends) {
            this(backend, mode, verify, prefetch, handlers, timeout, backends, null, null, null, null, null);
        }

        public Options {
            if (verify == null) verify = mode == Mode.EAGER ? Verify.UPFRONT : Verify.ON_FIRST_TOUCH;
            if (mode == Mode.EAGER && verify != Verify.UPFRONT) throw new IllegalArgumentException("an eager restore always verifies every chunk upfront");
            if (prefetch == null) prefetch = Prefetch.DEFAULT_READAHEAD;
            if (handlers < 1) handlers = 1;
            if (timeout == null) timeout = Duration.ofMinutes(5);
            if (backends == null) backends = Backends::open;
            if (shells == null) shells = Shells.NONE;
            if (observer == null) observer = Observer.NONE;
            if (recording != null && mode == Mode.EAGER) throw new IllegalArgumentException("an eager restore has no faults to record a working set from");
            if (recording != null && !(prefetch instanceof Prefetch.None)) {
                throw new IllegalArgumentException("recording a working set needs prefetch none (pages installed ahead of a touch are never seen), not "
                        + Prefetch.name(prefetch));
            }
            if (prefetch instanceof Prefetch.Replay && delivery == Delivery.EXIT) {
                throw new IllegalArgumentException("replaying a working set needs userfaultfd handler threads, which install it in the background "
                        + "(delivery uffd on kvm), not exit delivery");
            }
            if (uffdHandler != null && (mode == Mode.EAGER || delivery == Delivery.EXIT || recording != null || !(prefetch instanceof Prefetch.None))) {
                throw new IllegalArgumentException("a restore handed to an external page-fault handler is lazy, delivered through userfaultfd, "
                        + "with the handler's own prefetch and recording (--prefetch none here)");
            }
            if (delivery == Delivery.EXIT && handlers > 1) {
                throw new IllegalArgumentException("exit delivery has one handler thread, for host threads' faults only (each vCPU serves "
                        + "its own): not " + handlers + " handlers");
            }
        }

        public static Options of(String backend, Mode mode) {
            return new Options(backend, mode, null, null, 1, null, null);
        }

        public Options withVerify(Verify v) { return new Options(backend, mode, v, prefetch, handlers, timeout, backends, shells, delivery, recording, uffdHandler, observer); }
        public Options withPrefetch(Prefetch p) { return new Options(backend, mode, verify, p, handlers, timeout, backends, shells, delivery, recording, uffdHandler, observer); }
        public Options withBackends(Function<String, Hypervisor> b) { return new Options(backend, mode, verify, prefetch, handlers, timeout, b, shells, delivery, recording, uffdHandler, observer); }
        public Options withShells(Shells s) { return new Options(backend, mode, verify, prefetch, handlers, timeout, backends, s, delivery, recording, uffdHandler, observer); }
        public Options withDelivery(Delivery d) { return new Options(backend, mode, verify, prefetch, handlers, timeout, backends, shells, d, recording, uffdHandler, observer); }
        /** Records the working set of this restore ({@link Recording}); null: none. */
        public Options withRecording(Recording r) { return new Options(backend, mode, verify, prefetch, handlers, timeout, backends, shells, delivery, r, uffdHandler, observer); }
        /** Hands the RAM to the external page-fault handler listening on {@code socket}, as Firecracker does; null: faultline's own handler threads. */
        public Options withUffdHandler(Path socket) { return new Options(backend, mode, verify, prefetch, handlers, timeout, backends, shells, delivery, recording, socket, observer); }
        /** Tells {@code o} of the restore's moments as they happen (a service's metrics and events). */
        public Options withObserver(Observer o) { return new Options(backend, mode, verify, prefetch, handlers, timeout, backends, shells, delivery, recording, uffdHandler, o); }
    }

    /**
     * Told of a restore's moments as they happen, on the threads they happen on (keep it short and
     * never block: the first-instruction call is on a vCPU thread just before it enters the guest).
     */
    public interface Observer {
        /** A lazy restore's demand paging is set up: {@code core} serves (or, with an external handler, stands for) its faults. */
        default void pagingStarted(FaultCore core) {}

        /** The first vCPU is about to enter the guest, {@code nanos} after the restore began. */
        default void firstInstruction(long nanos) {}

        Observer NONE = new Observer() {};
    }

    /**
     * Where a restore's VM shell (VM, RAM, memslots) comes from: by default it is built during the
     * restore, on the calling thread while the description is checked; a process that restores again
     * and again (the restore service) can keep one built ahead.
     */
    @FunctionalInterface
    public interface Shells {
        /**
         * A shell of {@code ramBytes} of anonymous RAM, default VM type and no memslot flags, on
         * {@code hv}, now owned by the caller; or null, and the restore builds one.
         */
        VmShell take(Hypervisor hv, long ramBytes);

        Shells NONE = (hv, ramBytes) -> null;
    }

    /**
     * Nanoseconds from the start of {@link #run}. On the check thread: {@code described} (the
     * description read and checked), {@code checked} (then the page map, chunk table, file sizes,
     * all chunks when checked upfront; lazy: the low 1 MiB's chunk read and checked, the pager
     * created). Meanwhile on the calling thread: {@code backendOpened}, {@code vmReady} (VM, RAM and
     * memslots built ahead for the RAM size in the page map's header), {@code descriptionJoined} (the
     * checked description in hand), {@code machineBuilt} (vCPUs with their saved registers),
     * {@code checksJoined} (everything checked). Then {@code memoryReady} (eager: all of RAM; lazy:
     * the low 1 MiB copied in); {@code pagingReady} (lazy: userfaultfd registered and handler
     * threads started, or the exit-on-missing bitmap set); {@code firstEntry} (the first vCPU thread
     * is about to make its first KVM_RUN / ref run call); {@code ended} (every vCPU stopped,
     * untouched pages copied in, RAM hashed); {@code guestNanos}: from the first vCPU's first entry to
     * the last vCPU's last exit (the guest's own run).
     */
    public record Timings(long described, long backendOpened, long vmReady, long descriptionJoined, long machineBuilt, long checked,
                          long checksJoined, long memoryReady, long pagingReady, long firstEntry, long ended, long fillRestNanos, long guestNanos) {
        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("describe_ms", ms(described));
            m.put("check_ms", ms(checked - described));
            m.put("validate_ms", ms(checked));
            m.put("backend_open_ms", ms(backendOpened));
            m.put("vm_ms", ms(vmReady - backendOpened));
            m.put("description_wait_ms", ms(descriptionJoined - vmReady));
            m.put("vcpus_ms", ms(machineBuilt - descriptionJoined));
            m.put("machine_ms", ms(machineBuilt - backendOpened));
            m.put("check_wait_ms", ms(checksJoined - machineBuilt));
            m.put("memory_ms", ms(memoryReady - checksJoined));
            m.put("paging_setup_ms", ms(pagingReady - memoryReady));
            m.put("vcpu_thread_start_ms", ms(firstEntry - pagingReady));
            m.put("to_first_instruction_ms", ms(firstEntry));
            m.put("guest_run_ms", ms(guestNanos));
            m.put("to_guest_end_ms", ms(firstEntry + guestNanos));
            m.put("to_completion_ms", ms(ended));
            m.put("copy_untouched_pages_ms", ms(fillRestNanos));
            return m;
        }

        private static double ms(long nanos) {
            return Math.round(nanos / 1e3) / 1e3;
        }
    }

    /** How the restored guest compares with the snapshotted one's end ({@link SnapshotDescription#originalRun()}). */
    public record Comparison(boolean recorded, boolean ramMatches, boolean vcpusMatch, String workloadVerdict, boolean workloadVerified,
                             String verdict) {
        public boolean ok() { return (!recorded || (ramMatches && vcpusMatch)) && workloadVerified; }
    }

    /**
     * @param delivery      who served the lazy restore's faults (null for an eager one)
     * @param recordedPages pages of the working set written ({@link Options#recording}), or -1 when none was recorded
     */
    public record Result(SnapshotDescription snapshot, String backend, Mode mode, Verify verify, Delivery delivery, RunReport report,
                         PagingStats paging, long chunksVerified, long bytesRead, Timings timings, Comparison comparison, String failure,
                         long recordedPages) {
        public boolean ok() { return failure == null && report.clean() && comparison.ok(); }
    }

    public static Result run(Path dir, Options o) {
        long t0 = System.nanoTime();
        CompletableFuture<String> backendName = new CompletableFuture<>();
        Checks checks = new Checks(dir, o, backendName);
        PagerSlot slot = new PagerSlot();
        FirstEntry first = new FirstEntry(o.recording() == null ? 0 : o.recording().millis(), o.observer(), t0);
        Hypervisor hv = null;
        VmShell shell = null;
        Machine m = null;
        long backendOpened, vmReady, descriptionJoined, machineBuilt;
        SnapshotDescription d;
        Checked checked;
        try {
            hv = o.backends().apply(o.backend());
            backendOpened = System.nanoTime() - t0;
            backendName.complete(hv.name());
            shell = vmAhead(hv, dir, o.shells());
            vmReady = System.nanoTime() - t0;
            d = checks.description();
            descriptionJoined = System.nanoTime() - t0;
            MachineSpec spec = MachineSpec.resuming(d.ramBytes(), d.vcpus()).withTimeout(o.timeout()).withExitLogLimit(64)
                    .withMainSlot(0, slot).withMemoryPreparer(first.wrap(slot));
            if (shell != null && !shell.fits(hv, spec)) {
                shell.close();
                shell = null;
            }
            m = new Machine(hv, spec, shell);
            shell = null; // the machine owns it now
            machineBuilt = System.nanoTime() - t0;
            checked = checks.result();
        } catch (RuntimeException | Error e) {
            backendName.completeExceptionally(e); // if the check thread still waits for it
            if (m != null) m.close();
            if (shell != null) shell.close();
            if (hv != null) hv.close();
            SnapshotException refusal = checks.discard();
            if (refusal != null && refusal != e) { // a refused snapshot is reported as refused, not as what failed meanwhile
                refusal.addSuppressed(e);
                throw refusal;
            }
            throw e;
        }
        long checksJoined = System.nanoTime() - t0;
        Snapshot snap = checked.snapshot();
        DemandPager pager = checked.pager();
        slot.bind(pager);
        try (snap; Hypervisor backend = hv; Machine machine = m) {
            FaultCore core = pager == null ? null : pager.core();
            MemorySegment ram = machine.ram().segment();
            if (o.mode() == Mode.EAGER) snap.readInto(ram);
            else for (int c = 0; c < LOW_CHUNKS; c++) snap.copyLoadedChunk(c, checked.low().asSlice((long) c * SnapshotFormat.CHUNK_BYTES), ram);
            long memoryReady = System.nanoTime() - t0;
            RunReport report = machine.start().await();
            long ended = System.nanoTime() - t0;
            String failure = pager != null && pager.failureMessage() != null ? pager.failureMessage() : first.fillFailure;
            long recorded = -1;
            if (o.recording() != null && core != null && failure == null) {
                dev.faultline.paging.WorkingSet ws = core.recordedWorkingSet();
                try {
                    ws.write(o.recording().file());
                    recorded = ws.size();
                } catch (java.io.IOException e) {
                    failure = "the working set could not be written to " + o.recording().file() + ": " + e.getMessage();
                }
            }
            Timings t = new Timings(checked.describedAt() - t0, backendOpened, vmReady, descriptionJoined, machineBuilt,
                    checked.doneAt() - t0, checksJoined, memoryReady, first.prepared - t0, first.at.get() - t0, ended, first.fillNanos,
                    first.lastStop.get() == Long.MIN_VALUE ? 0 : first.lastStop.get() - first.at.get());
            Comparison c = compare(d, report, ram, failure);
            Delivery delivery = o.mode() == Mode.LAZY ? deliveryOn(backend.name(), o.delivery()) : null;
            return new Result(d, backend.name(), o.mode(), o.verify(), delivery, report, core == null ? null : new PagingStats(core),
                    snap.chunksVerified(), snap.bytesRead(), t, c, failure, recorded);
        }
    }

    /**
     * The VM with RAM and memslots, built before the description is read, for the RAM size that the
     * page map's header names (the description must say the same, and the page map is checked
     * against it, or the shell is closed unused); null when the header names none. No vCPU exists
     * until the description has been checked.
     */
    private static VmShell vmAhead(Hypervisor hv, Path dir, Shells shells) {
        long ram = PageMap.ramBytesInHeader(dir.resolve(SnapshotFormat.PAGE_MAP_FILE));
        if (ram < BootProtocol.IMAGE_MIN_GPA + SnapshotFormat.PAGE || ram > BootProtocol.MAX_RAM) return null;
        VmShell ready = shells.take(hv, ram);
        return ready != null ? ready : newShell(hv, ram);
    }

    /** A shell as a restore builds it: {@code ramBytes} of anonymous RAM, the default VM type, no memslot flags. */
    public static VmShell newShell(Hypervisor hv, long ramBytes) {
        return VmShell.create(hv, ramBytes, GuestRam.Backing.ANONYMOUS, Caps.VM_TYPE_DEFAULT, 0);
    }

    /**
     * What the check thread hands over: the opened snapshot, the low chunks read and checked and the
     * demand pager over the snapshot (lazy), and when the description and everything were checked
     * ({@link System#nanoTime}).
     */
    private record Checked(Snapshot snapshot, MemorySegment low, DemandPager pager, long describedAt, long doneAt) {}

    /**
     * The check thread, started at once: reads and checks the description (handed over as soon as
     * it is checked, {@link #description}), then the files against it, all chunks with
     * {@link Verify#UPFRONT}, and (lazy) reads the low chunks and creates the pager for the backend
     * the calling thread opened. Meanwhile the calling thread opens the backend and builds the
     * machine; it creates no vCPU before {@link #description} returned, and starts none before
     * {@link #result} did.
     */
    private static final class Checks {
        private final CompletableFuture<SnapshotDescription> description = new CompletableFuture<>();
        private final FutureTask<Checked> task;

        Checks(Path dir, Options o, CompletableFuture<String> backendName) {
            task = new FutureTask<>(() -> {
                SnapshotDescription d;
                try {
                    d = Snapshot.readDescription(dir);
                } catch (RuntimeException | Error e) {
                    description.completeExceptionally(e);
                    throw e;
                }
                long describedAt = System.nanoTime();
                description.complete(d);
                return check(dir, d, o, backendName, describedAt);
            });
            Thread.ofPlatform().daemon().name("snapshot-check").start(task);
        }

        /** The checked description; throws the refusal if it was refused. */
        SnapshotDescription description() {
            try {
                return description.join();
            } catch (CompletionException e) {
                throw rethrow(e.getCause());
            }
        }

        /** Everything checked; throws the refusal if something was refused. */
        Checked result() {
            try {
                return awaitTask();
            } catch (ExecutionException e) {
                throw rethrow(e.getCause());
            }
        }

        /** Waits for the thread to end and closes what it opened; returns its refusal, if it refused. */
        SnapshotException discard() {
            try {
                awaitTask().snapshot().close();
                return null;
            } catch (ExecutionException e) {
                return e.getCause() instanceof SnapshotException s ? s : null;
            }
        }

        private Checked awaitTask() throws ExecutionException {
            boolean interrupted = false;
            try {
                while (true) {
                    try {
                        return task.get();
                    } catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
            } finally {
                if (interrupted) Thread.currentThread().interrupt();
            }
        }

        private static RuntimeException rethrow(Throwable t) {
            if (t instanceof RuntimeException r) return r;
            if (t instanceof Error e) throw e;
            return new IllegalStateException("checking the snapshot failed: " + t, t);
        }
    }

    /**
     * On the check thread, after the description: checks the files against it, all chunks with
     * {@link Verify#UPFRONT}, and (lazy) reads the low chunks and creates the pager for the backend
     * the calling thread opened.
     */
    private static Checked check(Path dir, SnapshotDescription d, Options o, CompletableFuture<String> backendName, long describedAt) {
        Snapshot snap = Snapshot.open(dir, d);
        try {
            if (o.verify() == Verify.UPFRONT) snap.verifyAllChunks();
            if (o.mode() == Mode.EAGER) return new Checked(snap, null, null, describedAt, System.nanoTime());
            MemorySegment low = loadLowChunks(snap);
            DemandPager pager = lazyPager(backendName.join(), snap, o);
            return new Checked(snap, low, pager, describedAt, System.nanoTime());
        } catch (RuntimeException | Error e) {
            snap.close();
            throw e;
        }
    }

    /** Chunks of the low 1 MiB (boot tables), which a lazy restore writes before the start and never pages. */
    private static final int LOW_CHUNKS = (int) (BootProtocol.IMAGE_MIN_GPA / SnapshotFormat.CHUNK_BYTES);

    /** Reads and checks the low chunks into a buffer (packed per chunk), to be copied in once RAM exists. */
    private static MemorySegment loadLowChunks(Snapshot snap) {
        MemorySegment buf = HostMemory.scratch((long) LOW_CHUNKS * SnapshotFormat.CHUNK_BYTES);
        MessageDigest md = SnapshotWriter.sha256();
        for (int c = 0; c < LOW_CHUNKS; c++) snap.loadChunk(c, buf.asSlice((long) c * SnapshotFormat.CHUNK_BYTES), md);
        return buf;
    }

    /**
     * The delivery a lazy restore on {@code backend} uses: the one asked for, or the backend's own.
     * @throws IllegalArgumentException for userfaultfd delivery on ref, which has no userfaultfd
     */
    static Delivery deliveryOn(String backend, Delivery asked) {
        boolean ref = backend.equals("ref");
        if (ref && asked == Delivery.UFFD) {
            throw new IllegalArgumentException("the ref backend has no userfaultfd: a lazy restore there is served through memory-fault "
                    + "exits (delivery exit)");
        }
        return asked != null ? asked : ref ? Delivery.EXIT : Delivery.UFFD;
    }

    /**
     * The demand pager of a lazy restore: on kvm userfaultfd ({@link UffdPager}: handler threads with
     * readahead in the background, or with {@link Delivery#EXIT} each vCPU serving its own
     * memory-fault exit); on ref exit on missing ({@link ExitPager}). Under exit delivery readahead
     * windows are installed on the faulting vCPU's thread. All serve the same checked
     * {@link SnapshotSource}.
     */
    private static DemandPager lazyPager(String backend, Snapshot snap, Options o) {
        long base = BootProtocol.IMAGE_MIN_GPA;
        long size = snap.description().ramBytes() - base;
        int vcpus = snap.description().vcpus().size();
        boolean exits = deliveryOn(backend, o.delivery()) == Delivery.EXIT;
        Prefetch prefetch = exits ? ExitPager.onFaultingThread(o.prefetch()) : o.prefetch();
        if (prefetch instanceof Prefetch.Replay r && r.order().spaceBytes() != snap.description().ramBytes()) {
            throw new IllegalArgumentException("the working set was recorded for " + r.order().spaceBytes() + " bytes of guest RAM, this snapshot has "
                    + snap.description().ramBytes() + ": record it again from this snapshot");
        }
        if (prefetch instanceof Prefetch.Replay && exits) {
            throw new IllegalArgumentException("replaying a working set needs userfaultfd handler threads (delivery uffd on kvm), which install it in the background");
        }
        FaultCore core = new FaultCore(new SnapshotSource(snap), base, size, vcpus, prefetch, o.recording() != null);
        if (o.uffdHandler() != null) {
            if (!backend.equals("kvm")) throw new IllegalArgumentException("an external page-fault handler needs the kvm backend (userfaultfd), not " + backend);
            return new dev.faultline.pageserver.ExternalHandlerPager(core, o.uffdHandler());
        }
        if (backend.equals("ref")) return new ExitPager(core);
        return new UffdPager(core, exits ? UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING)
                : new UffdPager.Config(UffdPager.Mode.MISSING, o.handlers(), 0, false, List.of(), UffdPager.Pinning.NONE));
    }

    /**
     * Stands in for the lazy pager in the machine's spec: the machine is built (on the build thread)
     * before the pager exists, since which pager serves depends on the backend opened there. Bound
     * before the machine starts ({@code null}: eager, nothing to page); read only after that start,
     * on threads the start creates.
     */
    static final class PagerSlot implements MemoryPreparer, MemoryFaultHandler {
        private DemandPager pager;
        private MemoryFaultHandler handler = MemoryFaultHandler.NONE;

        void bind(DemandPager p) {
            pager = p;
            handler = p == null ? MemoryFaultHandler.NONE : p.faultHandler();
        }

        DemandPager pager() { return pager; }

        @Override
        public Session prepare(Context context) {
            return pager == null ? MemoryPreparer.NONE.prepare(context) : pager.prepare(context);
        }

        @Override
        public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
            return handler.resolve(vcpuIndex, fault);
        }

        @Override
        public String lastResolution(int vcpuIndex) {
            return handler.lastResolution(vcpuIndex);
        }

        @Override
        public String hypercall(int vcpuIndex, VcpuExit.Hypercall call) {
            return handler.hypercall(vcpuIndex, call);
        }
    }

    static Comparison compare(SnapshotDescription d, RunReport report, MemorySegment ram, String failure) {
        List<String> problems = new ArrayList<>();
        if (failure != null) problems.add(failure);
        SnapshotDescription.OriginalRun orig = d.originalRun();
        boolean ramOk = false, vcpusOk = false;
        if (orig != null) {
            ramOk = orig.ramSha256().equals(report.ramSha256());
            if (!ramOk) problems.add("RAM SHA-256 " + report.ramSha256() + " differs from the original run's " + orig.ramSha256());
            vcpusOk = true;
            for (VcpuResult v : report.vcpus()) {
                SnapshotDescription.VcpuEnd e = orig.vcpus().get(v.index());
                String outcome = v.outcome().name().toLowerCase();
                if (!outcome.equals(e.outcome()) || v.doneCode() != e.doneCode()) {
                    vcpusOk = false;
                    problems.add("vCPU " + v.index() + " ended " + outcome + " with code " + v.doneCode() + ", the original " + e.outcome()
                            + " with code " + e.doneCode());
                } else if (!isSuffix(v.reports(), e.reports())) {
                    vcpusOk = false;
                    problems.add("vCPU " + v.index() + " reported " + v.reports().length + " values that are not the last ones of the original run's "
                            + e.reports().size());
                }
            }
        }
        String workloadVerdict = "not a workload";
        boolean workloadOk = true;
        if (d.guest().isWorkload() && report.clean() && failure == null) {
            Workload w = Workloads.build(d.guest().workload(), d.guest().params());
            try {
                w.verify(ram);
                workloadVerdict = "memory verified";
            } catch (WorkloadMismatchException e) {
                workloadOk = false;
                workloadVerdict = e.getMessage();
                problems.add(e.getMessage());
            }
        } else if (d.guest().isWorkload()) {
            workloadOk = false;
            workloadVerdict = "not checked: the guest did not end cleanly";
        }
        String verdict = problems.isEmpty()
                ? (orig == null ? "no original run recorded; " + workloadVerdict : "RAM SHA-256 and every vCPU's end equal the original run's")
                : String.join("; ", problems);
        return new Comparison(orig != null, ramOk, vcpusOk, workloadVerdict, workloadOk, verdict);
    }

    private static boolean isSuffix(long[] got, List<Long> all) {
        if (got.length > all.size()) return false;
        int off = all.size() - got.length;
        for (int i = 0; i < got.length; i++) if (got[i] != all.get(off + i)) return false;
        return true;
    }
}
