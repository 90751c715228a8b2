package dev.faultline.cli;

import dev.faultline.sys.Libc;
import dev.faultline.vmm.ThreadPriority;
import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.workload.RegionLayout;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.UserfaultBitmap;
import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.FileSource;
import dev.faultline.paging.PageSource;
import dev.faultline.paging.PagingStats;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.WorkingSet;
import dev.faultline.paging.ZeroSource;
import dev.faultline.paging.exit.BlockingFaultHandler;
import dev.faultline.paging.exit.ExitFaultHandler;
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.paging.exit.RamInstaller;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.MemoryPreparer;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "paging", header = "Demand-paging benchmark: pages per second and fault latency, against baselines.",
        mixinStandardHelpOptions = true,
        description = {"Demand-paging benchmark: each vCPU touches one word of every page of its own region (seq-write,",
                "as the kernel's demand_paging_test), with every first touch served by faultline's fault core.",
                "Reports pages/s overall and per vCPU, fault-latency percentiles per vCPU (HdrHistogram) and",
                "handler counters. --baseline also runs the guest on memory that needs no paging (the first-touch",
                "ceiling); --c-baseline runs bench/uffd_copy_baseline.c (one poll()ing handler per vCPU, one",
                "UFFDIO_COPY per fault) on the same machine. On kvm, --delivery exit registers RAM with a userfaultfd",
                "that fails KVM's own faults, so each vCPU gets a memory-fault exit and serves its page on its own",
                "thread. On ref (--delivery exit|blocking) the main slot is under EXIT_ON_MISSING. --compare-deliveries",
                "runs exit delivery and the other one (uffd on kvm, blocking on ref) side by side in one process."})
final class BenchPagingCommand implements Callable<Integer> {
    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "kvm", description = "kvm or ref (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--delivery", paramLabel = "KIND", description = "kvm: uffd (a handler thread serves the sleeping vCPU) or exit (the "
            + "vCPU serves its own memory-fault exit); ref: exit or blocking (default: uffd on kvm, exit on ref).")
    String delivery;

    @Option(names = "--vcpus", paramLabel = "N", defaultValue = "1", description = "vCPUs (default: ${DEFAULT-VALUE}).")
    int vcpus;

    @Option(names = "--mem-per-vcpu", paramLabel = "SIZE", defaultValue = "128M", converter = Units.SizeConverter.class,
            description = "Memory each vCPU touches (default: ${DEFAULT-VALUE}).")
    long memPerVcpu;

    @Option(names = "--source", paramLabel = "KIND", defaultValue = "zero", description = "zero or file (default: ${DEFAULT-VALUE}).")
    String source;

    @Option(names = "--source-file", paramLabel = "FILE", description = "Flat RAM image for --source file (default: a generated sparse image, removed after).")
    Path sourceFile;

    @Option(names = "--prefetch", paramLabel = "KIND", defaultValue = "readahead", description = "none, readahead or replay (default: ${DEFAULT-VALUE}).")
    String prefetch;

    @Option(names = "--readahead", paramLabel = "I:M:A",
            description = "Readahead INITIAL:MAX:AHEAD in pages: window start, window limit, background pages ahead "
                    + "(default: 16:256:8192 on kvm; 16:256:0 on ref, where the faulting thread installs the whole window).")
    String readahead;

    @Option(names = "--working-set", paramLabel = "FILE", description = "Working-set file to replay (--prefetch replay).")
    Path workingSet;

    @Option(names = "--record-working-set", paramLabel = "FILE", description = "Write the order of first touches to this file.")
    Path recordWorkingSet;

    @Option(names = "--handlers", paramLabel = "N", description = "Handler threads (default: one per vCPU): on kvm uffd handlers, one userfaultfd "
            + "each; on ref the threads of --delivery blocking (vCPU v served by thread v mod N).")
    Integer handlers;

    @Option(names = "--spin-us", paramLabel = "MICROSECONDS",
            description = "Microseconds a handler spins on non-blocking reads after its last event before sleeping in poll() "
                    + "(a spinning handler never sleeps in read()). Default: 0. A spinning handler takes a CPU: at normal priority "
                    + "its vCPU's, or, on the other CPU, it turns every wake-up of its vCPU into a cross-CPU interrupt; at "
                    + "--handler-sched idle beside its vCPU it runs only while that CPU has nothing else to run, which on a quiet "
                    + "host is while the vCPU waits, and on a loaded host is almost never (docs/paging.md).")
    Long spinOption;

    @Option(names = "--handler-sched", paramLabel = "POLICY",
            description = "How uffd handler threads are scheduled: normal, idle (SCHED_IDLE), nice:N, or fifo:P (SCHED_FIFO "
                    + "priority P; not with --spin-us). Default: nice:-5 when the handlers sleep in read() (they run only to "
                    + "serve a fault, and a woken handler then does not queue behind other work on its CPU; normal if the kernel "
                    + "refuses, noted in the output); normal when they also prefetch in the background.")
    String handlerSched;

    @Option(names = "--handler-wait", paramLabel = "WHERE",
            description = "Where an idle uffd handler sleeps: read (in read() on a blocking userfaultfd: read and install per "
                    + "fault, two system calls), poll (in poll(): poll, read, install), or auto: read unless the handler spins "
                    + "or prefetches in the background (default: ${DEFAULT-VALUE}).", defaultValue = "auto")
    String handlerWait;

    @Option(names = "--pin", paramLabel = "HOW", description = "none, or paired: handler i and vCPU i share CPU i (kvm default: paired with one handler per "
            + "vCPU when every CPU has a vCPU or --prefetch none; ref default: paired, each vCPU with the CPU of its blocking handler).")
    String pin;

    @Option(names = "--backing", paramLabel = "KIND", defaultValue = "anonymous",
            description = "anonymous (userfaultfd MISSING, UFFDIO_COPY) or memfd (MINOR, UFFDIO_CONTINUE) (default: ${DEFAULT-VALUE}).")
    String backing;

    @Option(names = "--zeropage", description = "Map zero runs with UFFDIO_ZEROPAGE instead of copying zeros.")
    boolean zeropage;

    @Option(names = "--baseline", description = "Also run the guest on memory needing no demand paging and report the ratio.")
    boolean baseline;

    @Option(names = "--c-baseline", description = "Also build (gcc) and run bench/uffd_copy_baseline.c and report the ratio.")
    boolean cBaseline;

    @Option(names = "--warmup", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Run a small paged run first so the handler code is compiled (default: on; --no-warmup to skip).")
    boolean warmup;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Option(names = "--compare-deliveries",
            description = "Run exit delivery and the other one (kvm: uffd; ref: blocking) side by side for each of --vcpu-counts, "
                    + "--rounds times interleaved (order alternating per round), in one process, and report the ratios "
                    + "(with --c-baseline, also each delivery's ratio to the C program in the same round).")
    boolean compareDeliveries;

    @Option(names = "--vcpu-counts", paramLabel = "N", split = ",", defaultValue = "1,2",
            description = "vCPU counts of --compare-deliveries (default: ${DEFAULT-VALUE}).")
    List<Integer> vcpuCounts;

    @Option(names = "--rounds", paramLabel = "N",
            description = "Rounds of --compare-deliveries (default: 5); or, with --c-baseline and/or --baseline, how many times to "
                    + "run the paged run and its baselines back to back (order rotating per round), reporting every round's "
                    + "ratios and their median (default: 1). On a shared machine one pair of runs can land in different load.")
    Integer roundsOption;

    int rounds;

    @Override
    public Integer call() throws Exception {
        checkArguments();
        if (compareDeliveries) return compare();
        Setup setup = setup(vcpus, memPerVcpu);
        long ram = setup.ram();
        Workload workload = setup.workload();
        Path generated = null;
        Path file = sourceFile;
        if (source.equals("file") && file == null) {
            generated = Files.createTempFile("faultline-pages-", ".img");
            writeSampleImage(generated, ram, workload.layout().regionStart());
            file = generated;
        }
        try (Hypervisor hv = Backends.open(backend)) {
            requireExitDelivery(hv);
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("benchmark", "paging");
            out.put("backend", backend);
            out.put("delivery", delivery);
            out.put("mode", modeOf(delivery));
            out.put("workload", workload.description());
            out.put("vcpus", vcpus);
            out.put("mem_per_vcpu", memPerVcpu);
            out.put("source", source.equals("file") ? "file " + file : "zero");
            Prefetch pf = prefetchPolicy();
            out.put("prefetch", Prefetch.describe(deliveryPrefetch(delivery, pf)));
            if (isRef()) {
                out.put("handlers", delivery.equals("blocking") ? refHandlers(vcpus) : 0);
                out.put("pinning", pin);
            } else {
                UffdPager.Config config = uffdConfig(vcpus, delivery, List.of());
                out.put("handlers", config.handlers());
                out.put("spin_us", TimeUnit.NANOSECONDS.toMicros(config.spinNanos()));
                out.put("pinning", pin);
                out.put("handler_scheduling", config.scheduling().toString());
                try {
                    out.put("handler_sleeps_in", config.sleepsInRead(deliveryPrefetch(delivery, pf)) ? "read()" : "poll()");
                } catch (IllegalArgumentException e) {
                    throw new UserError("--handler-wait " + handlerWait + ": " + e.getMessage());
                }
            }
            if (warmup) warmUp(hv, vcpus, delivery, pf);
            List<Result> pagedRuns = new ArrayList<>(), ceilings = new ArrayList<>();
            List<Map<String, Object>> cRuns = new ArrayList<>();
            List<String> kinds = new ArrayList<>(List.of("paged"));
            if (cBaseline) kinds.add("c");
            if (baseline) kinds.add("ceiling");
            for (int r = 0; r < rounds; r++) {
                for (int k = 0; k < kinds.size(); k++) {
                    switch (kinds.get((k + r) % kinds.size())) {   // the order rotates, so no kind always runs first
                        case "paged" -> {
                            try (PageSource src = source.equals("file") ? FileSource.open(file, ram) : ZeroSource.INSTANCE) {
                                Result paged = pagedRun(hv, setup, delivery, src, pf, true);
                                if (source.equals("file")) paged.extra.put("ram_matches_file_except_stamps", compareWithFile(paged, file));
                                paged.ramCopy = null;   // compared; N rounds need not hold N copies of RAM
                                pagedRuns.add(paged);
                            }
                        }
                        case "c" -> cRuns.add(runCBaseline(workload, ram, "uffd"));
                        default -> ceilings.add(run(hv, setup, MemoryPreparer.NONE, null, null, false));
                    }
                }
            }
            Result paged = rounds == 1 ? pagedRuns.get(0) : medianRun(pagedRuns);
            out.putAll(paged.toMap());
            if (rounds > 1) {
                out.put("rounds", rounds);
                out.put("order", "per round: " + String.join(", ", kinds) + ", rotated by one each round; the figures above are "
                        + "the median paged run's");
                out.put("pages_per_sec_per_round", pagedRuns.stream().map(x -> Math.round(x.pagesPerSecond())).toList());
            }
            if (recordWorkingSet != null) {
                paged.core.recordedWorkingSet().write(recordWorkingSet);
                out.put("working_set_recorded", Map.of("file", recordWorkingSet.toString(), "pages", paged.core.recordedWorkingSet().size()));
            }
            if (baseline) {
                List<Double> ratios = new ArrayList<>();
                for (int r = 0; r < rounds; r++) ratios.add(round(pagedRuns.get(r).pagesPerSecond() / ceilings.get(r).pagesPerSecond()));
                out.put("first_touch_ceiling", (rounds == 1 ? ceilings.get(0) : medianRun(ceilings)).toMap());
                out.put("ratio_to_first_touch", median(ratios));
                if (rounds > 1) {
                    out.put("first_touch_pages_per_sec_per_round", ceilings.stream().map(x -> Math.round(x.pagesPerSecond())).toList());
                    out.put("ratio_to_first_touch_per_round", ratios);
                }
            }
            if (cBaseline) {
                List<Double> ratios = new ArrayList<>();
                List<Long> cps = new ArrayList<>();
                for (int r = 0; r < rounds; r++) {
                    double c = ((Number) cRuns.get(r).get("pages_per_sec")).doubleValue();
                    cps.add(Math.round(c));
                    ratios.add(round(pagedRuns.get(r).pagesPerSecond() / c));
                }
                List<Map<String, Object>> byRate = new ArrayList<>(cRuns);
                byRate.sort(java.util.Comparator.comparingDouble(m -> ((Number) m.get("pages_per_sec")).doubleValue()));
                out.put("c_baseline", byRate.get((byRate.size() - 1) / 2));
                out.put("ratio_to_c_baseline", median(ratios));
                if (rounds > 1) {
                    out.put("c_baseline_pages_per_sec_per_round", cps);
                    out.put("ratio_to_c_baseline_per_round", ratios);
                }
            }
            if (json) Json.print(System.out, out);
            else printText(out);
            return 0;
        } finally {
            if (generated != null) Files.deleteIfExists(generated);
        }
    }

    /** RAM size and seq-write guest for {@code n} vCPUs of {@code perVcpu} bytes each. */
    private record Setup(int vcpus, long ram, Workload workload) {}

    private static Setup setup(int n, long perVcpu) {
        long ram = RegionLayout.of(BootProtocol.IMAGE_MIN_GPA * 4 + perVcpu * n, n).regionStart() + perVcpu * n;
        Workload workload = Workloads.build("seq-write", WorkloadParams.of(ram, n));
        if (workload.layout().sliceBytes() != perVcpu) {
            throw new UserError("--mem-per-vcpu " + perVcpu + " does not give whole slices (layout " + workload.description() + ")");
        }
        return new Setup(n, ram, workload);
    }

    /** Memory per vCPU of the warm-up run: 16k faults at --prefetch none, enough for the JIT's optimising tier. */
    private static final long WARMUP_BYTES = 64L << 20;

    /** A small paged run first, so the serving code is compiled before the measured run. */
    private void warmUp(Hypervisor hv, int n, String how, Prefetch pf) {
        Setup small = setup(n, Math.min(memPerVcpu, WARMUP_BYTES));
        pagedRun(hv, small, how, ZeroSource.INSTANCE, pf instanceof Prefetch.Replay ? Prefetch.NONE : pf, false);
    }

    private boolean isRef() { return backend.equals("ref"); }

    /** Refuses, in one line, exit delivery on a kvm host where it cannot work. */
    private void requireExitDelivery(Hypervisor hv) {
        if (delivery.equals("exit") || compareDeliveries) ExitDeliveryCheck.require(hv, compareDeliveries ? "--compare-deliveries" : "--delivery exit");
    }

    /** The exit delivery's counterpart in --compare-deliveries: userfaultfd's handler threads on kvm, ref's blocking delivery. */
    private String otherDelivery() { return isRef() ? "blocking" : "uffd"; }

    /**
     * The prefetch a delivery runs with: exit delivery has no thread running ahead of the vCPU, so a
     * readahead window is installed whole by the faulting vCPU (ExitPager.onFaultingThread).
     */
    private static Prefetch deliveryPrefetch(String how, Prefetch pf) {
        return how.equals("exit") ? ExitPager.onFaultingThread(pf) : pf;
    }

    private String modeOf(String how) {
        return switch (how) {
            case "exit" -> isRef() ? "EXIT_ON_MISSING (userfault bitmap): the vCPU's own thread serves its memory-fault exit"
                    : "userfaultfd MISSING, user-mode faults only: KVM's access to a missing page fails, and the vCPU's own thread "
                    + "serves its memory-fault exit (" + (backing.equals("memfd") ? "UFFDIO_CONTINUE" : "UFFDIO_COPY") + ")";
            case "blocking" -> "EXIT_ON_MISSING (userfault bitmap): the vCPU sleeps while a handler thread serves (userfaultfd-like)";
            default -> backing.equals("memfd") ? "MINOR (UFFDIO_CONTINUE)" : "MISSING (" + (zeropage ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY") + ")";
        };
    }

    /**
     * --compare-deliveries: for each vCPU count, exit and blocking delivery (and the first-touch
     * ceiling with --baseline) back to back in every round, the order alternating between rounds, so
     * each ratio compares runs made at nearly the same time on the same (shared, noisy) machine.
     */
    private Integer compare() throws Exception {
        Prefetch pf = prefetchPolicy();
        Path generated = null;
        try (Hypervisor hv = Backends.open(backend)) {
            requireExitDelivery(hv);
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("benchmark", "paging-deliveries");
            out.put("backend", backend);
            out.put("mem_per_vcpu", memPerVcpu);
            out.put("prefetch", Prefetch.describe(pf));
            out.put("rounds", rounds);
            String other = otherDelivery();
            out.put("order", "per round and vCPU count: exit and " + other + " back to back (exit first in even rounds, " + other
                    + " first in odd ones)" + (cBaseline ? ", then the C program" : "") + (baseline ? ", then the first-touch ceiling" : ""));
            out.put("deliveries", Map.of("exit", modeOf("exit"), other, modeOf(other)));
            Map<Integer, Setup> setups = new LinkedHashMap<>();
            long maxRam = 0;
            for (int n : vcpuCounts) {
                Setup s = setup(n, memPerVcpu);
                setups.put(n, s);
                maxRam = Math.max(maxRam, s.ram());
            }
            Path file = sourceFile;
            if (source.equals("file") && file == null) {
                generated = Files.createTempFile("faultline-pages-", ".img");
                writeSampleImage(generated, maxRam, setups.values().iterator().next().workload().layout().regionStart());
                file = generated;
            }
            out.put("source", source.equals("file") ? "file " + file : "zero");
            if (warmup) {
                for (int n : vcpuCounts) {
                    for (String how : List.of("exit", other)) warmUp(hv, n, how, pf);
                    if (baseline) run(hv, setup(n, Math.min(memPerVcpu, WARMUP_BYTES)), MemoryPreparer.NONE, null, null, false);
                }
            }
            Map<Integer, Map<String, List<Result>>> results = new LinkedHashMap<>();
            Map<Integer, List<Double>> cRates = new LinkedHashMap<>();
            for (int round = 0; round < rounds; round++) {
                for (int n : vcpuCounts) {
                    Setup s = setups.get(n);
                    Map<String, List<Result>> byHow = results.computeIfAbsent(n, k -> new LinkedHashMap<>());
                    List<String> order = round % 2 == 0 ? List.of("exit", other) : List.of(other, "exit");
                    for (String how : order) {
                        try (PageSource src = source.equals("file") ? FileSource.open(file, s.ram()) : ZeroSource.INSTANCE) {
                            Result r = pagedRun(hv, s, how, src, pf, source.equals("file"));
                            if (source.equals("file")) r.extra.put("ram_matches_file_except_stamps", compareWithFile(r, file));
                            byHow.computeIfAbsent(how, k -> new ArrayList<>()).add(r);
                        }
                    }
                    if (cBaseline) {
                        Map<String, Object> c = runCBaseline(s.workload(), s.ram(), "uffd");
                        cRates.computeIfAbsent(n, k -> new ArrayList<>()).add(((Number) c.get("pages_per_sec")).doubleValue());
                    }
                    if (baseline) byHow.computeIfAbsent("ceiling", k -> new ArrayList<>()).add(run(hv, s, MemoryPreparer.NONE, null, null, false));
                }
            }
            List<Object> comparisons = new ArrayList<>();
            for (Map.Entry<Integer, Map<String, List<Result>>> e : results.entrySet()) {
                Map<String, List<Result>> byHow = e.getValue();
                Map<String, Object> c = new LinkedHashMap<>();
                c.put("vcpus", e.getKey());
                c.put("pages", byHow.get("exit").get(0).pages());
                List<Double> ratios = new ArrayList<>();
                for (int i = 0; i < rounds; i++) ratios.add(round(byHow.get("exit").get(i).pagesPerSecond() / byHow.get(other).get(i).pagesPerSecond()));
                c.put("exit_over_" + other, median(ratios));
                c.put("exit_over_" + other + "_per_round", ratios);
                List<Double> cs = cRates.get(e.getKey());
                for (String how : List.of("exit", other)) {
                    Map<String, Object> d = summary(byHow.get(how));
                    if (baseline) {
                        List<Double> r = new ArrayList<>();
                        for (int i = 0; i < rounds; i++) r.add(round(byHow.get(how).get(i).pagesPerSecond() / byHow.get("ceiling").get(i).pagesPerSecond()));
                        d.put("ratio_to_first_touch", median(r));
                        d.put("ratio_to_first_touch_per_round", r);
                    }
                    if (cs != null) {
                        List<Double> r = new ArrayList<>();
                        for (int i = 0; i < rounds; i++) r.add(round(byHow.get(how).get(i).pagesPerSecond() / cs.get(i)));
                        d.put("ratio_to_c_baseline", median(r));
                        d.put("ratio_to_c_baseline_per_round", r);
                    }
                    c.put(how, d);
                }
                if (cs != null) c.put("c_baseline_pages_per_sec_per_round", cs.stream().map(Math::round).toList());
                if (baseline) c.put("first_touch_ceiling", summary(byHow.get("ceiling")));
                comparisons.add(c);
            }
            out.put("comparisons", comparisons);
            if (json) Json.print(System.out, out);
            else printComparison(out);
            return 0;
        } finally {
            if (generated != null) Files.deleteIfExists(generated);
        }
    }

    /** The run with the median pages/s (the lower middle one of an even count). */
    private static Result medianRun(List<Result> runs) {
        List<Result> sorted = new ArrayList<>(runs);
        sorted.sort(java.util.Comparator.comparingDouble(Result::pagesPerSecond));
        return sorted.get((sorted.size() - 1) / 2);
    }

    /** The median run's full figures (by pages/s), with every run's pages/s beside them. */
    private static Map<String, Object> summary(List<Result> runs) {
        List<Result> sorted = new ArrayList<>(runs);
        sorted.sort(java.util.Comparator.comparingDouble(Result::pagesPerSecond));
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("pages_per_sec_median", Math.round(sorted.get((sorted.size() - 1) / 2).pagesPerSecond()));
        List<Long> all = new ArrayList<>();
        for (Result r : runs) all.add(Math.round(r.pagesPerSecond()));
        m.put("pages_per_sec_per_round", all);
        m.put("median_run", sorted.get((sorted.size() - 1) / 2).toMap());
        return m;
    }

    private static double median(List<Double> values) {
        List<Double> v = new ArrayList<>(values);
        java.util.Collections.sort(v);
        int n = v.size();
        return n % 2 == 1 ? v.get(n / 2) : round((v.get(n / 2 - 1) + v.get(n / 2)) / 2);
    }

    private void checkArguments() {
        if (!backend.equals("kvm") && !backend.equals("ref")) throw new UserError("--backend is kvm or ref, not '" + backend + "'");
        rounds = roundsOption != null ? roundsOption : compareDeliveries ? 5 : 1;
        if (rounds < 1) throw new UserError("--rounds must be at least 1");
        if (!compareDeliveries && rounds > 1) {
            if (!cBaseline && !baseline) throw new UserError("--rounds repeats a comparison: give --c-baseline and/or --baseline");
            if (recordWorkingSet != null) throw new UserError("--record-working-set records one run; use it without --rounds");
        }
        if (delivery == null) delivery = isRef() ? "exit" : "uffd";
        if (!delivery.equals("uffd") && !delivery.equals("exit") && !delivery.equals("blocking")) {
            throw new UserError("--delivery is uffd, exit or blocking, not '" + delivery + "'");
        }
        if (compareDeliveries) {
            if (vcpuCounts.isEmpty()) throw new UserError("--vcpu-counts needs at least one count");
            for (int n : vcpuCounts) if (n < 1 || n > BootProtocol.MAX_VCPUS) throw new UserError("--vcpu-counts must be 1.." + BootProtocol.MAX_VCPUS);
            if (recordWorkingSet != null) throw new UserError("--record-working-set records one run; use it without --compare-deliveries");
        }
        if (isRef()) checkRefArguments();
        else checkKvmArguments();
        // Pairing handler i with vCPU i on one CPU saves cross-CPU wake-ups, but background readahead
        // wants a CPU of its own: pair when every CPU has a vCPU, or when nothing runs in the background.
        if (pin == null) {
            boolean busy = vcpus >= Runtime.getRuntime().availableProcessors() || prefetch.equals("none");
            pin = handlerCount(vcpus) == vcpus && busy ? "paired" : "none";
        }
        if (readahead == null) readahead = isRef() ? "16:256:0" : "16:256:8192";
        if (vcpus < 1 || vcpus > BootProtocol.MAX_VCPUS) throw new UserError("--vcpus must be 1.." + BootProtocol.MAX_VCPUS);
        if (memPerVcpu < FaultCore.PAGE || memPerVcpu % FaultCore.PAGE != 0) throw new UserError("--mem-per-vcpu must be a positive multiple of 4 KiB");
        if (!source.equals("zero") && !source.equals("file")) throw new UserError("--source is zero or file, not '" + source + "'");
        if (sourceFile != null && !source.equals("file")) throw new UserError("--source-file needs --source file");
        if (!backing.equals("anonymous") && !backing.equals("memfd")) throw new UserError("--backing is anonymous or memfd, not '" + backing + "'");
        if (prefetch.equals("replay") && workingSet == null) throw new UserError("--prefetch replay needs --working-set FILE (record one with --record-working-set)");
        if (!pin.equals("none") && !pin.equals("paired")) throw new UserError("--pin is none or paired, not '" + pin + "'");
        if (!isRef() && !delivery.equals("exit") && pin.equals("paired") && handlerCount(vcpus) != vcpus) {
            throw new UserError("--pin paired needs one handler per vCPU");
        }
        if (spinOption != null && spinOption < 0) throw new UserError("--spin-us must not be negative");
        long spinMicros = spinMicros();
        handlerWaiting();
        if (handlerWait.equals("read") && spinMicros > 0) {
            throw new UserError("--handler-wait read with --spin-us " + spinMicros + ": a handler sleeping in read() does not spin; use --handler-wait poll");
        }
        if (handlerWait.equals("read") && !prefetch.equals("none") && !prefetch.equals("readahead")) {
            throw new UserError("--handler-wait read has no turn for background prefetch (--prefetch " + prefetch + "): use --handler-wait poll");
        }
        if (handlerScheduling().policy() == ThreadPriority.Policy.FIFO && spinMicros > 0) {
            throw new UserError("--handler-sched " + handlerSched + " with --spin-us " + spinMicros + ": a spinning SCHED_FIFO handler "
                    + "would starve the vCPU sharing its CPU; use --spin-us 0 or normal scheduling");
        }
    }

    /** ref runs exit or blocking delivery; the userfaultfd knobs have no meaning there and are refused, not ignored. */
    private void checkRefArguments() {
        if (delivery.equals("uffd") && !compareDeliveries) {
            throw new UserError("the ref backend has no userfaultfd: use --delivery exit (the vCPU serves its own memory-fault exit) "
                    + "or --delivery blocking (the vCPU sleeps while a handler thread serves)");
        }
        if (handlers != null && delivery.equals("exit") && !compareDeliveries) {
            throw new UserError("--handlers counts handler threads; --delivery exit has none (each vCPU serves its own memory-fault exit): "
                    + "use it with --delivery blocking or --compare-deliveries");
        }
        if (handlers != null && handlers < 1) throw new UserError("--handlers must be at least 1");
        String kvmOnly = cBaseline ? "--c-baseline (a KVM program)" : spinOption != null ? "--spin-us"
                : handlerSched != null ? "--handler-sched" : !handlerWait.equals("auto") ? "--handler-wait" : !backing.equals("anonymous") ? "--backing" : zeropage ? "--zeropage" : null;
        if (kvmOnly != null) throw new UserError(kvmOnly + " is for userfaultfd delivery on kvm; the ref backend pages through memory-fault exits");
        if (readahead != null) {
            String[] p = readahead.split(":");
            if (p.length == 3 && !p[2].equals("0")) {
                throw new UserError("on ref a readahead window is installed by the faulting thread (exit delivery has no thread to "
                        + "read ahead in the background): give AHEAD 0, e.g. --readahead 16:256:0");
            }
        }
        if (pin == null) pin = "paired";
    }

    /**
     * kvm runs uffd or exit delivery. Under exit delivery each vCPU serves its own faults and one
     * handler thread serves host threads' faults only, so the knobs of handlers that serve vCPUs are
     * refused with it, not ignored (with --compare-deliveries they apply to the uffd runs).
     */
    private void checkKvmArguments() {
        if (delivery.equals("blocking")) {
            throw new UserError("--delivery blocking is the ref backend's userfaultfd-like delivery; on kvm userfaultfd is the blocking "
                    + "design itself: use --delivery uffd (or exit)");
        }
        if (!delivery.equals("exit") || compareDeliveries) return;
        if (handlers != null && handlers != 1) {
            throw new UserError("--handlers " + handlers + " with --delivery exit: each vCPU serves its own faults, and one handler thread "
                    + "serves host threads' faults only");
        }
        if (spinOption != null && spinOption > 0) {
            throw new UserError("--spin-us with --delivery exit: its one handler serves host threads' faults only and does not spin");
        }
    }

    private UffdPager.Waiting handlerWaiting() {
        return switch (handlerWait) {
            case "auto" -> UffdPager.Waiting.AUTO;
            case "read" -> UffdPager.Waiting.READ;
            case "poll" -> UffdPager.Waiting.POLL;
            default -> throw new UserError("--handler-wait is auto, read or poll, not '" + handlerWait + "'");
        };
    }

    /**
     * The userfaultfd configuration of a run of {@code n} vCPUs with delivery {@code how} (uffd: handler
     * parts starting at {@code splits}; exit: one handler for host threads' faults, which never spins
     * and runs normally unless --handler-sched says otherwise).
     */
    private UffdPager.Config uffdConfig(int n, String how, List<Long> splits) {
        UffdPager.Mode mode = backing.equals("memfd") ? UffdPager.Mode.MINOR : UffdPager.Mode.MISSING;
        UffdPager.Pinning pinning = pin.equals("paired") ? UffdPager.Pinning.PAIRED : UffdPager.Pinning.NONE;
        if (how.equals("exit")) {
            ThreadPriority scheduling = handlerSched == null ? ThreadPriority.NORMAL : handlerScheduling();
            return new UffdPager.Config(mode, 1, 0, zeropage, List.of(), pinning, scheduling, handlerWaiting(), UffdPager.Delivery.VCPU_EXIT);
        }
        return new UffdPager.Config(mode, handlerCount(n), TimeUnit.MICROSECONDS.toNanos(spinMicros()), zeropage, splits, pinning,
                handlerScheduling(), handlerWaiting());
    }

    /**
     * Default --handler-sched for handlers that sleep in read(): measured in docs/paging.md. (Until
     * 2026-12-06 the handlers of --prefetch none spun at SCHED_IDLE by default: on a host with other
     * busy processes they got almost no CPU, 481 pages/s against exit delivery's 63.8k.)
     */
    static final int DEFAULT_READ_HANDLER_NICE = -5;

    private long spinMicros() {
        return spinOption != null ? spinOption : 0;
    }

    /** --handler-sched, parsed (checked in checkArguments); the default depends on where the handlers sleep. */
    private ThreadPriority handlerScheduling() {
        if (handlerSched == null) {
            boolean sleepsInRead = handlerWait.equals("read")
                    || handlerWait.equals("auto") && spinMicros() == 0 && (prefetch.equals("none") || prefetch.equals("readahead") && readaheadAhead() == 0);
            return sleepsInRead ? ThreadPriority.nice(DEFAULT_READ_HANDLER_NICE) : ThreadPriority.NORMAL;
        }
        try {
            return ThreadPriority.parse(handlerSched);
        } catch (IllegalArgumentException e) {
            throw new UserError("--handler-sched: " + e.getMessage());
        }
    }

    /** AHEAD of --readahead (0 when it does not parse; prefetchPolicy() reports that). */
    private int readaheadAhead() {
        String[] p = readahead == null ? new String[0] : readahead.split(":");
        try {
            return p.length == 3 ? Integer.parseInt(p[2]) : 0;
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    /** uffd handler threads for {@code n} vCPUs: one per vCPU, or --handlers. */
    private int handlerCount(int n) { return handlers == null ? n : handlers; }

    /** Handler threads of ref's blocking delivery for {@code n} vCPUs: one per vCPU, or --handlers (at most n). */
    private int refHandlers(int n) { return handlers == null ? n : Math.min(handlers, n); }

    private Prefetch prefetchPolicy() {
        return switch (prefetch) {
            case "none" -> Prefetch.NONE;
            case "readahead" -> {
                String[] p = readahead.split(":");
                if (p.length != 3) throw new UserError("--readahead is INITIAL:MAX:AHEAD in pages, e.g. 16:256:8192");
                try {
                    yield new Prefetch.Readahead(Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2]));
                } catch (NumberFormatException e) {
                    throw new UserError("--readahead is INITIAL:MAX:AHEAD in pages, e.g. 16:256:8192, not '" + readahead + "'");
                }
            }
            case "replay" -> new Prefetch.Replay(WorkingSet.read(workingSet), 64);
            default -> throw new UserError("--prefetch is none, readahead or replay, not '" + prefetch + "'");
        };
    }

    /** One measured run. */
    private static final class Result {
        final Workload workload;
        final RunReport report;
        final FaultCore core;
        MemorySegment ramCopy;
        /** uffd: per vCPU, its thread's CPU time, run-queue wait and switches over the run (null elsewhere). */
        dev.faultline.paging.ThreadTimes[] vcpuThreads;
        /** ref: per vCPU, the time its thread spent in the fault handler per exit, wake-ups included (null elsewhere). */
        Histogram[] vcpuWait;
        final Map<String, Object> extra = new LinkedHashMap<>();

        Result(Workload workload, RunReport report, FaultCore core, MemorySegment ramCopy) {
            this.workload = workload;
            this.report = report;
            this.core = core;
            this.ramCopy = ramCopy;
        }

        long pages() { return workload.touchesPerVcpu() * report.vcpus().size(); }

        double seconds() {
            long max = 0;
            for (VcpuResult v : report.vcpus()) max = Math.max(max, v.runNanos());
            return max / 1e9;
        }

        double pagesPerSecond() { return pages() / seconds(); }

        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("pages", pages());
            m.put("seconds", round(seconds()));
            m.put("pages_per_sec", Math.round(pagesPerSecond()));
            List<Object> per = new ArrayList<>();
            PagingStats stats = core == null ? null : new PagingStats(core);
            for (VcpuResult v : report.vcpus()) {
                Map<String, Object> x = new LinkedHashMap<>();
                x.put("vcpu", v.index());
                x.put("pages", workload.touchesPerVcpu());
                x.put("seconds", round(v.runNanos() / 1e9));
                x.put("pages_per_sec", Math.round(workload.touchesPerVcpu() / (v.runNanos() / 1e9)));
                x.put("exits", v.exitCounts());
                if (stats != null) x.put("fault_latency", PagingStats.percentiles(stats.latency(v.index())));
                if (vcpuWait != null) x.put("vcpu_wait", PagingStats.percentiles(vcpuWait[v.index()]));
                if (vcpuThreads != null) {
                    Map<String, Object> t = PagingStats.threadTimes(vcpuThreads[v.index()], workload.touchesPerVcpu());
                    if (!t.isEmpty()) x.put("thread_per_page", t);
                }
                per.add(x);
            }
            m.put("per_vcpu", per);
            if (stats != null) m.put("handler", stats.toMap());
            m.put("verified", "every vCPU ended with done 0 and every page holds its stamp");
            m.putAll(extra);
            return m;
        }
    }

    private Result pagedRun(Hypervisor hv, Setup setup, String how, PageSource src, Prefetch pf, boolean keepRam) {
        long base = BootProtocol.IMAGE_MIN_GPA;
        int n = setup.vcpus();
        FaultCore core = new FaultCore(src, base, setup.ram() - base, n, deliveryPrefetch(how, pf), recordWorkingSet != null);
        if (isRef()) {
            RefPaging paging = new RefPaging(core, how.equals("blocking"), refHandlers(n), pin.equals("paired"), setup.workload().image(), n);
            HeldTimes held = new HeldTimes(n, paging);
            Result r = run(hv, setup, paging, held, core, keepRam);
            r.vcpuWait = held.perVcpu;
            r.extra.put("installed_exactly_once", paging.checkExactlyOnce());
            return r;
        }
        List<Long> splits = new ArrayList<>();
        if (!how.equals("exit") && handlerCount(n) == n) for (int i = 1; i < n; i++) splits.add(setup.workload().layout().sliceStart(i));
        UffdPager pager = new UffdPager(core, uffdConfig(n, how, splits));
        HeldTimes held = how.equals("exit") ? new HeldTimes(n, pager.faultHandler()) : null;
        Result r = run(hv, setup, pager, held, core, keepRam);
        if (held != null) r.vcpuWait = held.perVcpu;
        if (pager.schedulingRefused() != null) {
            if (handlerSched != null) throw new UserError("--handler-sched " + handlerSched + " was refused: " + pager.schedulingRefused());
            r.extra.put("handler_scheduling_refused", pager.schedulingRefused() + " (the handlers ran normally)");
        }
        r.vcpuThreads = new dev.faultline.paging.ThreadTimes[n];
        for (int i = 0; i < n; i++) r.vcpuThreads[i] = pager.vcpuThreadTimes(i);
        if (pager.failureMessage() != null) throw new UserError("paging failed: " + pager.failureMessage());
        return r;
    }

    private Result run(Hypervisor hv, Setup setup, MemoryPreparer preparer, MemoryFaultHandler handler, FaultCore core, boolean keepRam) {
        GuestImage img = setup.workload().image();
        MachineSpec spec = MachineSpec.of(setup.ram(), setup.vcpus(), img).withExitLogLimit(0)
                .withTimeout(Duration.ofMinutes(10)).withMemoryPreparer(preparer)
                .withBacking(backing.equals("memfd") && core != null ? GuestRam.Backing.MEMFD : GuestRam.Backing.ANONYMOUS);
        if (handler != null) spec = spec.withMainSlot(0, handler);
        Workload workload = setup.workload();
        try (Machine m = new Machine(hv, spec)) {
            RunReport report = m.run();
            if (!report.clean()) {
                StringBuilder sb = new StringBuilder("the guest did not finish cleanly:");
                for (VcpuResult v : report.vcpus()) sb.append(" vCPU ").append(v.index()).append(' ').append(v.outcome()).append(" (").append(v.detail()).append(')');
                throw new UserError(sb.toString());
            }
            workload.verify(m.ram().segment());
            MemorySegment copy = null;
            if (keepRam && source.equals("file")) {
                copy = Arena.ofAuto().allocate(setup.ram(), FaultCore.PAGE);
                copy.copyFrom(m.ram().segment());
            }
            return new Result(workload, report, core, copy);
        }
    }

    /**
     * Demand paging on ref: the main slot [1 MiB, RAM) goes under EXIT_ON_MISSING with a userfault
     * bitmap in which every page but the image's is missing (the image the VMM loaded stays; the
     * kvm path leaves it mapped the same way). Each memory-fault exit goes to exit delivery (the
     * vCPU's thread serves it through the fault core) or blocking delivery (a handler thread serves
     * it while the vCPU sleeps); either marks the pages present in the bitmap through its PresentHook.
     * With --prefetch replay one extra thread installs the working set on a lane of its own.
     */
    private static final class RefPaging implements MemoryPreparer, MemoryFaultHandler {
        private final FaultCore core;
        private final boolean blocking;
        private final int blockingHandlers;
        private final boolean paired;
        private final GuestImage image;
        private UserfaultBitmap missing;
        private long missingAtStart;
        private MemoryFaultHandler delivery;   // set in prepare(), before any vCPU thread starts

        RefPaging(FaultCore core, boolean blocking, int blockingHandlers, boolean paired, GuestImage image, int vcpus) {
            this.core = core;
            this.blocking = blocking;
            this.blockingHandlers = blockingHandlers;
            this.paired = paired;
            this.image = image;
        }

        @Override
        public Session prepare(Context c) {
            long base = core.baseGpa();
            missing = UserfaultBitmap.allMissing(base, core.endGpa() - base);
            long from = image.loadGpa() & -FaultCore.PAGE, to = (image.loadGpa() + image.size() + FaultCore.PAGE - 1) & -FaultCore.PAGE;
            missing.markPresent(from, to - from);
            long first = core.pageOf(from), count = (to - from) >>> FaultCore.PAGE_SHIFT;
            core.states().claimRun(first, (int) count, first + count);   // the core never fetches over the image either
            core.states().markPresent(first, count);
            missingAtStart = missing.missingPages();
            c.vm().setMemorySlot(c.vm().slotAt(base).withUserfault(missing));
            BlockingFaultHandler handler = null;
            if (blocking) {
                delivery = handler = new BlockingFaultHandler(core, c.ram().memory(), c.vcpus(), missing::markPresent, blockingHandlers, paired);
            }
            else delivery = new ExitFaultHandler(core, c.ram().memory(), c.vcpus(), missing::markPresent);
            Thread prefetcher = null;
            AtomicBoolean stop = new AtomicBoolean();
            if (core.prefetch() instanceof Prefetch.Replay) {
                FaultCore.Lane lane = core.newLane("replay", base, core.endGpa(), new RamInstaller(c.ram().memory(), missing::markPresent));
                prefetcher = Thread.ofPlatform().daemon().name("replay-prefetch").start(() -> {
                    while (!stop.get() && core.prefetchStep(lane) > 0) {
                        // one chunk at a time, so a stop is seen between chunks
                    }
                });
            }
            BlockingFaultHandler toClose = handler;
            Thread toJoin = prefetcher;
            return new Session() {
                @Override
                public void vcpuThreadStarted(int index) {
                    // paired: a vCPU on its blocking handler's CPU (exit delivery: vCPU i on CPU i, likewise)
                    if (toClose != null) toClose.pinVcpuThread(index);
                    else if (paired) Libc.pinCurrentThreadToCpuOf(index);
                }

                @Override
                public void close() {
                    stop.set(true);
                    if (toClose != null) toClose.close();
                    if (toJoin != null) {
                        try {
                            toJoin.join();
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }
                }
            };
        }

        @Override
        public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) { return delivery.resolve(vcpuIndex, fault); }

        /** Every page the lanes installed left the bitmap exactly once: installed pages = pages no longer missing. */
        String checkExactlyOnce() {
            long installed = 0;
            for (FaultCore.Lane l : core.lanes()) installed += l.stats().pagesInstalled();
            long cleared = missingAtStart - missing.missingPages();
            if (installed != cleared) {
                throw new UserError("paging installed " + installed + " pages but " + cleared + " pages left the missing state: a page was "
                        + "installed more than once or marked present without an install");
            }
            return "yes (" + installed + " pages installed, " + cleared + " pages marked present)";
        }
    }

    /**
     * How long each vCPU's thread was held per memory-fault exit, from entering the handler to
     * returning to re-enter (blocking delivery: both wake-ups included): one HdrHistogram per vCPU,
     * written only by that vCPU's thread; no allocation per fault.
     */
    private static final class HeldTimes implements MemoryFaultHandler {
        final Histogram[] perVcpu;
        private final MemoryFaultHandler inner;

        HeldTimes(int vcpus, MemoryFaultHandler inner) {
            this.inner = inner;
            this.perVcpu = new Histogram[vcpus];
            for (int i = 0; i < vcpus; i++) perVcpu[i] = new Histogram(dev.faultline.paging.LaneStats.MAX_NANOS, 3);
        }

        @Override
        public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
            long t0 = System.nanoTime();
            String failure = inner.resolve(vcpuIndex, fault);
            perVcpu[vcpuIndex].recordValue(Math.min(System.nanoTime() - t0, dev.faultline.paging.LaneStats.MAX_NANOS));
            return failure;
        }

        @Override
        public String lastResolution(int vcpuIndex) { return inner.lastResolution(vcpuIndex); }
    }

    /** Every touched page equals the file except its first word (the guest's stamp). */
    private static String compareWithFile(Result r, Path file) throws IOException {
        RegionLayout layout = r.workload.layout();
        try (Arena arena = Arena.ofConfined(); FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            MemorySegment img = size == 0 ? MemorySegment.NULL : ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long bad = 0;
            for (int v = 0; v < layout.vcpus(); v++) {
                for (long gpa = layout.sliceStart(v); gpa < layout.sliceEnd(v); gpa += FaultCore.PAGE) {
                    for (long off = 8; off < FaultCore.PAGE; off += 8) {
                        long want = gpa + off < size ? img.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa + off) : 0;
                        if (r.ramCopy.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa + off) != want) { bad++; break; }
                    }
                }
            }
            if (bad > 0) throw new UserError(bad + " pages of RAM differ from " + file + " beyond the guest's stamp");
            return "yes";
        }
    }

    /** A sparse RAM image: every eighth page of the region is a hole, the others hold a pattern of their gpa. */
    static void writeSampleImage(Path file, long ram, long regionStart) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer page = ByteBuffer.allocateDirect((int) FaultCore.PAGE).order(ByteOrder.LITTLE_ENDIAN);
            for (long gpa = regionStart; gpa < ram; gpa += FaultCore.PAGE) {
                if ((gpa / FaultCore.PAGE) % 8 == 7) continue;
                page.clear();
                for (int off = 0; off < FaultCore.PAGE; off += 8) page.putLong(off, (gpa + off) * 0x9E3779B97F4A7C15L);
                ch.write(page, gpa);
            }
            if (ch.size() < ram) ch.truncate(ram);
            try (FileChannel grow = FileChannel.open(file, StandardOpenOption.WRITE)) {
                if (grow.size() < ram) grow.write(ByteBuffer.allocate(1), ram - 1);
            }
        }
    }

    /** Builds bench/uffd_copy_baseline.c with gcc and runs it on the same guest. */
    private Map<String, Object> runCBaseline(Workload workload, long ram, String mode) throws IOException, InterruptedException {
        Path bin = buildC("uffd_copy_baseline");
        RegionLayout layout = workload.layout();
        Path boot = Files.createTempFile("faultline-boot-", ".bin");
        try {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment low = arena.allocate(layout.regionStart(), FaultCore.PAGE);
                BootSetup.writeSystemTables(low, ram);
                GuestImage img = workload.image();
                MemorySegment.copy(MemorySegment.ofArray(img.bytes()), 0, low, img.loadGpa(), img.size());
                Files.write(boot, low.toArray(ValueLayout.JAVA_BYTE));
            }
            dev.faultline.hv.Sregs s = BootSetup.sregs(null);
            List<String> cmd = new ArrayList<>(List.of(bin.toString(), mode, boot.toString(), hex(ram), Integer.toString(layout.vcpus()),
                    hex(workload.image().entry()), hex(s.cr0()), hex(s.cr3()), hex(s.cr4()), hex(s.efer()), hex(s.gdt().base()),
                    hex(s.gdt().limit()), hex(BootProtocol.TSS_GPA), hex(BootProtocol.STACKS_TOP), hex(BootProtocol.STACK_SIZE),
                    hex(layout.regionStart()), hex(layout.sliceBytes())));
            Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            String outText = new String(p.getInputStream().readAllBytes()).strip();
            if (p.waitFor() != 0) throw new UserError("bench/uffd_copy_baseline failed: " + outText);
            @SuppressWarnings("unchecked")
            Map<String, Object> m = Json.mapper().readValue(outText, LinkedHashMap.class);
            m.put("program", "bench/uffd_copy_baseline.c (KVM guest, one poll()ing handler thread per vCPU, one UFFDIO_COPY per fault)");
            return m;
        } finally {
            Files.deleteIfExists(boot);
        }
    }

    /**
     * Builds bench/NAME.c with gcc into target/NAME (again when the source is newer) and returns the binary.
     * @throws UserError naming the reason when the source is missing or gcc is missing or fails
     */
    static Path buildC(String name) throws IOException, InterruptedException {
        Path root = repositoryRoot();
        Path src = root.resolve("bench/" + name + ".c");
        if (!Files.exists(src)) throw new UserError("the C baseline needs " + src + " (run from the repository root)");
        Path bin = root.resolve("target/" + name);
        Files.createDirectories(bin.getParent());
        if (!Files.exists(bin) || Files.getLastModifiedTime(bin).compareTo(Files.getLastModifiedTime(src)) < 0) {
            Process p;
            try {
                p = new ProcessBuilder("gcc", "-O2", "-Wall", "-pthread", "-o", bin.toString(), src.toString()).redirectErrorStream(true).start();
            } catch (IOException e) {
                throw new UserError("gcc is needed to build " + src + " and cannot be run: " + e.getMessage());
            }
            String log = new String(p.getInputStream().readAllBytes());
            if (p.waitFor() != 0) throw new UserError("gcc could not build " + src + ": " + log.strip());
        }
        return bin;
    }

    /** The checkout this jar was built in (target/faultline.jar or target/classes), else the working directory. */
    private static Path repositoryRoot() {
        try {
            Path p = Path.of(BenchPagingCommand.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            for (Path d = p; d != null; d = d.getParent()) if (Files.exists(d.resolve("bench/uffd_copy_baseline.c"))) return d;
        } catch (java.net.URISyntaxException | SecurityException e) {
            // fall through to the working directory
        }
        return Path.of("").toAbsolutePath();
    }

    private static String hex(long v) { return "0x" + Long.toHexString(v); }

    private static double round(double v) { return Math.round(v * 1000) / 1000.0; }

    @SuppressWarnings("unchecked")
    private static void printText(Map<String, Object> out) {
        System.out.printf(Locale.ROOT, "paging: %s, %s, %s vCPU(s) x %s, source %s, prefetch %s%n", out.get("backend"), out.get("mode"),
                out.get("vcpus"), Units.formatSize((Long) out.get("mem_per_vcpu")), out.get("source"), out.get("prefetch"));
        if (out.containsKey("handler_sleeps_in")) {
            System.out.printf(Locale.ROOT, "  %s uffd handler(s), sleeping in %s, %s, pinning %s, spin %s us%s%n", out.get("handlers"),
                    out.get("handler_sleeps_in"), out.get("handler_scheduling"), out.get("pinning"), out.get("spin_us"),
                    out.containsKey("handler_scheduling_refused") ? " (refused: " + out.get("handler_scheduling_refused") + ")" : "");
        }
        System.out.printf(Locale.ROOT, "  %d pages in %.3f s: %d pages/s%s%n", (Long) out.get("pages"), (Double) out.get("seconds"), (Long) out.get("pages_per_sec"),
                out.containsKey("pages_per_sec_per_round") ? " (median of " + out.get("rounds") + " rounds: " + out.get("pages_per_sec_per_round") + ")" : "");
        for (Object o : (List<Object>) out.get("per_vcpu")) {
            Map<String, Object> v = (Map<String, Object>) o;
            Map<String, Object> l = (Map<String, Object>) v.get("fault_latency");
            System.out.printf(Locale.ROOT, "  vCPU %s: %s pages/s; %s faults, latency p50 %s us, p99 %s us, p99.9 %s us%n", v.get("vcpu"),
                    v.get("pages_per_sec"), l.get("faults"), l.get("p50_us"), l.get("p99_us"), l.get("p999_us"));
            if (v.get("vcpu_wait") instanceof Map<?, ?> w) {
                System.out.printf(Locale.ROOT, "          vCPU held per exit: p50 %s us, p99 %s us, p99.9 %s us%n", w.get("p50_us"), w.get("p99_us"),
                        w.get("p999_us"));
            }
        }
        Map<String, Object> h = (Map<String, Object>) out.get("handler");
        System.out.printf(Locale.ROOT, "  handler: %s faults, %s pages installed (%s in the background)%n", h.get("faults"),
                h.get("pages_installed"), h.get("pages_prefetched"));
        if (out.containsKey("first_touch_ceiling")) {
            Map<String, Object> b = (Map<String, Object>) out.get("first_touch_ceiling");
            System.out.printf(Locale.ROOT, "  first-touch ceiling: %s pages/s; ratio %s%n", b.get("pages_per_sec"), out.get("ratio_to_first_touch"));
            if (out.containsKey("ratio_to_first_touch_per_round")) {
                System.out.printf(Locale.ROOT, "    per round: ceiling %s, ratio %s (median above)%n", out.get("first_touch_pages_per_sec_per_round"),
                        out.get("ratio_to_first_touch_per_round"));
            }
        }
        if (out.containsKey("c_baseline")) {
            Map<String, Object> c = (Map<String, Object>) out.get("c_baseline");
            System.out.printf(Locale.ROOT, "  C baseline (uffd, poll, one COPY per fault): %s pages/s; ratio %s%n", c.get("pages_per_sec"),
                    out.get("ratio_to_c_baseline"));
            if (out.containsKey("ratio_to_c_baseline_per_round")) {
                System.out.printf(Locale.ROOT, "    per round: C %s, ratio %s (median above)%n", out.get("c_baseline_pages_per_sec_per_round"),
                        out.get("ratio_to_c_baseline_per_round"));
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static void printComparison(Map<String, Object> out) {
        System.out.printf(Locale.ROOT, "paging deliveries on %s, %s per vCPU, source %s, prefetch %s, %s rounds%n", out.get("backend"),
                Units.formatSize((Long) out.get("mem_per_vcpu")), out.get("source"), out.get("prefetch"), out.get("rounds"));
        String other = out.get("backend").equals("ref") ? "blocking" : "uffd";
        for (Object o : (List<Object>) out.get("comparisons")) {
            Map<String, Object> c = (Map<String, Object>) o;
            System.out.printf(Locale.ROOT, "  %s vCPU(s): exit/%s %s (per round %s)%n", c.get("vcpus"), other, c.get("exit_over_" + other),
                    c.get("exit_over_" + other + "_per_round"));
            if (c.containsKey("c_baseline_pages_per_sec_per_round")) {
                System.out.printf(Locale.ROOT, "    C (uffd, poll) %s pages/s per round%n", c.get("c_baseline_pages_per_sec_per_round"));
            }
            for (String how : List.of("exit", other, "first_touch_ceiling")) {
                Map<String, Object> d = (Map<String, Object>) c.get(how);
                if (d == null) continue;
                Map<String, Object> run = (Map<String, Object>) d.get("median_run");
                StringBuilder lat = new StringBuilder();
                for (Object v : (List<Object>) run.get("per_vcpu")) {
                    Map<String, Object> x = (Map<String, Object>) v;
                    if (x.get("vcpu_wait") instanceof Map<?, ?> w) {
                        lat.append(String.format(Locale.ROOT, "; vCPU %s held p50/p99/p99.9 %s/%s/%s us", x.get("vcpu"), w.get("p50_us"),
                                w.get("p99_us"), w.get("p999_us")));
                    }
                }
                System.out.printf(Locale.ROOT, "    %-8s %8s pages/s (rounds %s)%s%s%s%n", how.equals("first_touch_ceiling") ? "ceiling" : how,
                        d.get("pages_per_sec_median"), d.get("pages_per_sec_per_round"),
                        d.containsKey("ratio_to_first_touch") ? ", " + d.get("ratio_to_first_touch") + " of the ceiling" : "",
                        d.containsKey("ratio_to_c_baseline") ? ", " + d.get("ratio_to_c_baseline") + "x C" : "", lat);
            }
        }
    }
}
