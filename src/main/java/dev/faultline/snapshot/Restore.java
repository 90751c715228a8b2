package dev.faultline.snapshot;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadMismatchException;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageSourceException;
import dev.faultline.paging.PageStates;
import dev.faultline.paging.PagingStats;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryPreparer;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
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
 *       needed; with {@link Verify#UPFRONT} all of them before the backend is opened. After the guest
 *       ends, pages it never touched are copied in (so RAM equals the snapshotted guest's).</li>
 * </ul>
 * Everything that can be checked without reading chunk data is checked before the backend is
 * opened ({@link Snapshot#open}); nothing of a refused snapshot ever runs.
 */
public final class Restore {
    private Restore() {}

    public enum Mode { EAGER, LAZY }

    /** When a lazy restore checks chunk SHA-256s (eager restores always check all of them first). */
    public enum Verify { UPFRONT, ON_FIRST_TOUCH }

    /**
     * @param backend  "kvm", "ref" or "auto"
     * @param handlers userfaultfd handler threads (lazy)
     * @param backends opens a backend by name ({@link Backends#open}; tests count the calls)
     */
    public record Options(String backend, Mode mode, Verify verify, Prefetch prefetch, int handlers, Duration timeout,
                          Function<String, Hypervisor> backends) {
        public Options {
            if (verify == null) verify = mode == Mode.EAGER ? Verify.UPFRONT : Verify.ON_FIRST_TOUCH;
            if (prefetch == null) prefetch = Prefetch.DEFAULT_READAHEAD;
            if (handlers < 1) handlers = 1;
            if (timeout == null) timeout = Duration.ofMinutes(5);
            if (backends == null) backends = Backends::open;
        }

        public static Options of(String backend, Mode mode) {
            return new Options(backend, mode, null, null, 1, null, null);
        }

        public Options withVerify(Verify v) { return new Options(backend, mode, v, prefetch, handlers, timeout, backends); }
        public Options withPrefetch(Prefetch p) { return new Options(backend, mode, verify, p, handlers, timeout, backends); }
        public Options withBackends(Function<String, Hypervisor> b) { return new Options(backend, mode, verify, prefetch, handlers, timeout, b); }
    }

    /**
     * Nanoseconds from the start of {@link #run}: {@code validated} (description, page map, file sizes,
     * and all chunks when checked upfront), {@code machineBuilt} (backend open, VM, memslots, vCPUs
     * with their saved registers), {@code memoryReady} (eager: all of RAM; lazy: the low 1 MiB),
     * {@code pagingReady} (lazy: userfaultfd registered, handler threads started), {@code firstEntry}
     * (the first vCPU thread is about to make its first KVM_RUN / ref run call), {@code ended} (every vCPU stopped, untouched pages
     * copied in, RAM hashed).
     */
    public record Timings(long validated, long machineBuilt, long memoryReady, long pagingReady, long firstEntry, long ended,
                          long fillRestNanos) {
        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("validate_ms", ms(validated));
            m.put("machine_ms", ms(machineBuilt - validated));
            m.put("memory_ms", ms(memoryReady - machineBuilt));
            m.put("paging_setup_ms", ms(pagingReady - memoryReady));
            m.put("vcpu_thread_start_ms", ms(firstEntry - pagingReady));
            m.put("to_first_instruction_ms", ms(firstEntry));
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

    public record Result(SnapshotDescription snapshot, String backend, Mode mode, Verify verify, RunReport report, PagingStats paging,
                         long chunksVerified, long bytesRead, Timings timings, Comparison comparison, String failure) {
        public boolean ok() { return failure == null && report.clean() && comparison.ok(); }
    }

    public static Result run(Path dir, Options o) {
        long t0 = System.nanoTime();
        try (Snapshot snap = Snapshot.open(dir)) {
            if (o.verify() == Verify.UPFRONT) snap.verifyAllChunks();
            long validated = System.nanoTime() - t0;
            SnapshotDescription d = snap.description();
            FirstEntry first = new FirstEntry();
            try (Hypervisor hv = o.backends().apply(o.backend())) {
                FaultCore core = null;
                DemandPager pager = null;
                MachineSpec spec = MachineSpec.resuming(d.ramBytes(), d.vcpus()).withTimeout(o.timeout()).withExitLogLimit(64)
                        .withMemoryPreparer(first.wrap(MemoryPreparer.NONE, null));
                if (o.mode() == Mode.LAZY) {
                    pager = lazyPager(hv, snap, o);
                    core = pager.core();
                    spec = spec.withMainSlot(0, pager.faultHandler()).withMemoryPreparer(first.wrap(pager, core));
                }
                try (Machine m = new Machine(hv, spec)) {
                    long machineBuilt = System.nanoTime() - t0;
                    MemorySegment ram = m.ram().segment();
                    if (o.mode() == Mode.EAGER) snap.readInto(ram);
                    else snap.readChunksInto(ram, 0, (int) (BootProtocol.IMAGE_MIN_GPA / SnapshotFormat.CHUNK_BYTES));
                    long memoryReady = System.nanoTime() - t0;
                    RunReport report = m.start().await();
                    long ended = System.nanoTime() - t0;
                    String failure = pager != null && pager.failureMessage() != null ? pager.failureMessage() : first.fillFailure;
                    Timings t = new Timings(validated, machineBuilt, memoryReady, first.prepared - t0, first.at.get() - t0, ended, first.fillNanos);
                    Comparison c = compare(d, report, m.ram().segment(), failure);
                    return new Result(d, hv.name(), o.mode(), o.verify(), report, core == null ? null : new PagingStats(core),
                            snap.chunksVerified(), snap.bytesRead(), t, c, failure);
                }
            }
        }
    }

    /**
     * The demand pager of a lazy restore: on kvm userfaultfd ({@link UffdPager}, handler threads with
     * readahead in the background); on ref exit on missing ({@link ExitPager}: each vCPU serves its own
     * memory-fault exit, readahead windows installed on the faulting vCPU's thread). Both serve the
     * same checked {@link SnapshotSource}.
     */
    private static DemandPager lazyPager(Hypervisor hv, Snapshot snap, Options o) {
        long base = BootProtocol.IMAGE_MIN_GPA;
        long size = snap.description().ramBytes() - base;
        int vcpus = snap.description().vcpus().size();
        if (hv.name().equals("ref")) {
            return new ExitPager(new FaultCore(new SnapshotSource(snap), base, size, vcpus, ExitPager.onFaultingThread(o.prefetch()), false));
        }
        FaultCore core = new FaultCore(new SnapshotSource(snap), base, size, vcpus, o.prefetch(), false);
        return new UffdPager(core, new UffdPager.Config(UffdPager.Mode.MISSING, o.handlers(), 0, false, List.of(), UffdPager.Pinning.NONE));
    }

    /**
     * Wraps the run's memory preparer: notes when the first vCPU thread is about to enter the guest,
     * and after a lazy run (userfaultfd unregistered, so RAM can be written and read from Java) copies
     * in every page the guest never touched, from the same checked source.
     */
    private static final class FirstEntry {
        final AtomicLong at = new AtomicLong(Long.MAX_VALUE);
        volatile String fillFailure;
        volatile long fillNanos;
        volatile long prepared;

        MemoryPreparer wrap(MemoryPreparer inner, FaultCore core) {
            return context -> {
                MemoryPreparer.Session s = inner.prepare(context);
                prepared = System.nanoTime();
                return new MemoryPreparer.Session() {
                    @Override
                    public void vcpuThreadStarted(int index) {
                        s.vcpuThreadStarted(index);
                        long now = System.nanoTime();
                        at.accumulateAndGet(now, Math::min);
                    }

                    @Override
                    public void vcpuThreadStopping(int index) { s.vcpuThreadStopping(index); }

                    @Override
                    public void close() {
                        s.close();
                        if (core != null && !(inner instanceof DemandPager p && p.failureMessage() != null)) {
                            long t = System.nanoTime();
                            fillUntouched(core, context.ram().segment());
                            fillNanos = System.nanoTime() - t;
                        }
                    }
                };
            };
        }

        private void fillUntouched(FaultCore core, MemorySegment ram) {
            PageStates st = core.states();
            long pages = st.pages();
            long p = 0;
            try {
                while (p < pages) {
                    if (st.get(p) != PageStates.MISSING) { p++; continue; }
                    long q = p;
                    long chunkEnd = (core.gpaOf(p) / SnapshotFormat.CHUNK_BYTES + 1) * SnapshotFormat.CHUNK_BYTES;
                    while (q < pages && st.get(q) == PageStates.MISSING && core.gpaOf(q) < chunkEnd) q++;
                    long gpa = core.gpaOf(p), len = (q - p) * FaultCore.PAGE;
                    if (!core.source().isZero(gpa, len)) core.source().fill(gpa, ram, gpa, len);
                    p = q;
                }
            } catch (PageSourceException e) {
                fillFailure = "after the guest ended, copying the pages it never touched failed: " + e.getMessage();
            }
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
