package dev.faultline.cli;

import dev.faultline.pageserver.FirecrackerVersion;
import dev.faultline.pageserver.FirecrackerVmm;
import dev.faultline.pageserver.GuestRegionMapping;
import dev.faultline.pageserver.MemoryFile;
import dev.faultline.pageserver.PageServer;
import dev.faultline.paging.LaneStats;
import dev.faultline.paging.PagingStats;
import dev.faultline.paging.Prefetch;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.telemetry.EventLog;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "handler", header = "faultline's Firecracker page-fault handler against a C handler written as Firecracker's examples are.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Plays N Firecracker VMMs in this process (each: two guest regions mapped separately, one userfaultfd made as",
                "Firecracker makes it, the v1.12+ handshake), each with M threads that touch every page of their share of the",
                "VM's memory once, in sequential or random order, from native code (as a vCPU's access waits in the kernel).",
                "The same load is served by faultline's handler (uffd-handler, in this process) and by bench/uffd_fc_handler.c",
                "(built with gcc at run time; a child process: poll, then one UFFDIO_COPY per fault, as Firecracker's example",
                "handlers). Reports pages/s and the fault latency the touching threads saw (p50/p99/p99.9) for both, per",
                "round, and their ratio; every run's memory is checked against the file. All VMs restore the same memory file."})
final class BenchHandlerCommand implements Callable<Integer> {
    @Option(names = "--vm-counts", paramLabel = "N,..", split = ",", defaultValue = "1,4", description = "VMs at once, per measurement. Default: ${DEFAULT-VALUE}.")
    List<Integer> vmCounts;

    @Option(names = "--threads", paramLabel = "M", defaultValue = "2", description = "Touching threads per VM. Default: ${DEFAULT-VALUE}.")
    int threads;

    @Option(names = "--mem", paramLabel = "SIZE", defaultValue = "64M", converter = Units.SizeConverter.class,
            description = "Guest memory per VM (= the memory file's size). Default: 64M.")
    long mem;

    @Option(names = "--patterns", paramLabel = "P,..", split = ",", defaultValue = "sequential,random",
            description = "Touch orders: sequential, random. Default: ${DEFAULT-VALUE}.")
    List<String> patterns;

    @Option(names = "--rounds", paramLabel = "R", defaultValue = "3", description = "Rounds; the order of the two handlers alternates. Default: ${DEFAULT-VALUE}.")
    int rounds;

    @Option(names = "--prefetch", paramLabel = "KIND", defaultValue = "none",
            description = "faultline's handler: none (one page per fault, as the C handler) or readahead. Default: ${DEFAULT-VALUE}.")
    String prefetch;

    @Option(names = "--no-c-baseline", description = "Measure faultline's handler only.")
    boolean noC;

    @Option(names = "--json", description = "Print one JSON object on stdout.")
    boolean json;

    static final long PAGE = 4096, TIMEOUT_MS = 300_000;

    @Override
    public Integer call() throws Exception {
        if (threads < 1 || threads > 64) throw new UserError("--threads takes 1 to 64, not " + threads);
        if (rounds < 1 || rounds > 100) throw new UserError("--rounds takes 1 to 100, not " + rounds);
        if (mem < 4 * PAGE || mem % (4 * PAGE) != 0 || mem > (16L << 30)) throw new UserError("--mem must be a multiple of 16 KiB from 16K to 16G");
        for (int n : vmCounts) if (n < 1 || n > 64) throw new UserError("--vm-counts takes 1 to 64 VMs, not " + n);
        for (String p : patterns) if (!p.equals("sequential") && !p.equals("random")) throw new UserError("--patterns are sequential or random, not '" + p + "'");
        Prefetch pf = switch (prefetch) {
            case "none" -> Prefetch.NONE;
            case "readahead" -> Prefetch.DEFAULT_READAHEAD;
            default -> throw new UserError("--prefetch is none or readahead, not '" + prefetch + "'");
        };
        try {
            Userfaultfd.openAsFirecracker().close();
        } catch (dev.faultline.sys.ErrnoException e) {
            throw new UserError("bench handler needs userfaultfd: " + e.getMessage());
        }
        Path dir = Files.createTempDirectory("faultline-bench-handler-", PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        try {
            Path memFile = dir.resolve("mem");
            writeMemoryFile(memFile, mem);
            String cSkipped = null;
            Path cBin = null;
            if (noC) cSkipped = "--no-c-baseline";
            else {
                try {
                    cBin = BenchPagingCommand.buildC("uffd_fc_handler");
                } catch (UserError e) {
                    cSkipped = e.getMessage();
                }
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("load_average_at_start", loadAverage());
            out.put("vm_mem_bytes", mem);
            out.put("threads_per_vm", threads);
            out.put("prefetch", Prefetch.name(pf));
            out.put("rounds", rounds);
            if (cSkipped != null) out.put("c_baseline_skipped", cSkipped);
            // warm-up: each handler serves one VM once, so faultline's handler path is compiled before it is measured
            for (String p : List.of("sequential", "random")) {
                runOnce(Handler.JAVA, memFile, dir, pf, null, 2, p);
                if (cBin != null) runOnce(Handler.C, memFile, dir, pf, cBin, 1, p);
            }
            List<Object> results = new ArrayList<>();
            for (int vms : vmCounts) {
                for (String pattern : patterns) {
                    List<Run> java = new ArrayList<>(), c = new ArrayList<>();
                    for (int r = 0; r < rounds; r++) {
                        boolean cFirst = cBin != null && r % 2 == 1;
                        if (cFirst) c.add(runOnce(Handler.C, memFile, dir, pf, cBin, vms, pattern));
                        java.add(runOnce(Handler.JAVA, memFile, dir, pf, null, vms, pattern));
                        if (cBin != null && !cFirst) c.add(runOnce(Handler.C, memFile, dir, pf, cBin, vms, pattern));
                    }
                    results.add(summary(vms, pattern, java, c));
                    if (!json) printText(vms, pattern, java, c);
                }
            }
            out.put("results", results);
            out.put("load_average_at_end", loadAverage());
            if (json) Json.print(System.out, out);
            long bad = 0;
            for (Object o : results) bad += ((Number) ((Map<?, ?>) o).get("mismatches")).longValue();
            return bad == 0 ? 0 : 1;
        } finally {
            try (var files = Files.walk(dir)) {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    enum Handler { JAVA, C }

    /** One measured run: pages/s over all VMs, the touching threads' latencies (ns), words that differed from the file. */
    record Run(double pagesPerSecond, Histogram latency, long mismatches, Map<String, Object> handlerFigures) {}

    private Run runOnce(Handler h, Path memFile, Path dir, Prefetch pf, Path cBin, int vms, String pattern) throws Exception {
        Path socket = dir.resolve(h == Handler.JAVA ? "j.sock" : "c.sock");
        Files.deleteIfExists(socket);
        PageServer server = null;
        MemoryFile file = null;
        Process c = null;
        try {
            if (h == Handler.JAVA) {
                file = MemoryFile.open(memFile, true);
                server = PageServer.start(new PageServer.Config(socket, Set.of(UffdHandlerCommand.ownUid()), 64, file, file.size(), pf, null, 0,
                        PageServer.OnFailure.CLOSE, 5000, EventLog.NONE, null, line -> { }));
            } else {
                c = startC(cBin, socket, memFile);
            }
            Run r = load(socket, vms, pattern);
            Map<String, Object> figures = new LinkedHashMap<>();
            if (server != null) {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (server.endedVms().size() < vms && System.nanoTime() < deadline) Thread.sleep(2);
                long faults = 0, pages = 0, removed = 0;
                for (PageServer.VmView v : server.endedVms()) {
                    PagingStats st = new PagingStats(v.core());
                    faults += st.faults();
                    pages += st.pagesInstalled();
                }
                figures.put("faults_served", faults);
                figures.put("pages_installed", pages);
            }
            return new Run(r.pagesPerSecond(), r.latency(), r.mismatches(), figures);
        } finally {
            if (server != null) server.close();
            if (file != null) file.close();
            if (c != null) {
                c.destroy();
                if (!c.waitFor(5, TimeUnit.SECONDS)) c.destroyForcibly();
            }
        }
    }

    private static Process startC(Path bin, Path socket, Path memFile) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(bin.toString(), socket.toString(), memFile.toString()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream()));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < deadline) {
            if (r.ready()) {
                if ("listening".equals(r.readLine())) return p;
            } else if (!p.isAlive()) {
                throw new UserError("bench/uffd_fc_handler.c ended at start with code " + p.exitValue());
            } else {
                Thread.sleep(2);
            }
        }
        p.destroyForcibly();
        throw new UserError("bench/uffd_fc_handler.c did not start listening within 10 s");
    }

    /** N VMMs, M threads each, every page touched once; the handler listens on {@code socket}. */
    private Run load(Path socket, int vms, String pattern) throws Exception {
        List<List<HostMemory>> mems = new ArrayList<>();
        List<FirecrackerVmm> vmms = new ArrayList<>();
        long quarter = (mem / 4) & -PAGE;
        try {
            for (int v = 0; v < vms; v++) {
                List<HostMemory> regions = List.of(HostMemory.anonymous(quarter), HostMemory.anonymous(mem - quarter));
                mems.add(regions);
                List<GuestRegionMapping> maps = List.of(new GuestRegionMapping(regions.get(1).address(), mem - quarter, quarter, PAGE),
                        new GuestRegionMapping(regions.get(0).address(), quarter, 0, PAGE));
                vmms.add(FirecrackerVmm.handOff(socket, maps, FirecrackerVersion.V1_12, false));
            }
            long pages = mem / PAGE;
            int workers = vms * threads;
            CyclicBarrier go = new CyclicBarrier(workers + 1);
            Histogram[] lat = new Histogram[workers];
            long[] ends = new long[workers];
            List<Thread> ts = new ArrayList<>();
            List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
            for (int w = 0; w < workers; w++) {
                int vm = w / threads, t = w % threads, index = w;
                long from = pages * t / threads, to = pages * (t + 1) / threads;
                long[] addrs = new long[(int) (to - from)];
                for (long p = from; p < to; p++) addrs[(int) (p - from)] = address(mems.get(vm), quarter, p * PAGE);
                if (pattern.equals("random")) shuffle(addrs, new Random(31L * w + 7));
                lat[w] = new Histogram(LaneStats.MAX_NANOS, 3);
                ts.add(Thread.ofPlatform().name("bench-vmm-" + vm + "-" + t).start(() -> {
                    try {
                        go.await();
                        Histogram hist = lat[index];
                        for (long a : addrs) {
                            long t0 = System.nanoTime();
                            Libc.loadLongInNative(a);
                            hist.recordValue(Math.min(System.nanoTime() - t0, LaneStats.MAX_NANOS));
                        }
                        ends[index] = System.nanoTime();
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }));
            }
            go.await();
            long start = System.nanoTime();
            for (Thread t : ts) t.join(TIMEOUT_MS);
            for (Thread t : ts) {
                if (t.isAlive()) {
                    for (FirecrackerVmm v : vmms) v.uffd().close();   // release the waiting touches, so the command ends
                    throw new UserError("a touching thread still waited after " + TIMEOUT_MS / 1000 + " s: the handler stopped serving");
                }
            }
            if (!errors.isEmpty()) throw new IllegalStateException("a touching thread failed: " + errors.getFirst(), errors.getFirst());
            long end = Arrays.stream(ends).max().orElse(start);
            Histogram all = new Histogram(LaneStats.MAX_NANOS, 3);
            for (Histogram h : lat) all.add(h);
            long mismatches = 0;
            for (List<HostMemory> regions : mems) {
                for (long p = 0; p < pages; p += 61) {
                    long off = p * PAGE + 8 * (p % 512);
                    if (Libc.loadLongInNative(address(regions, quarter, off)) != word(off)) mismatches++;
                }
            }
            return new Run(vms * pages / ((end - start) / 1e9), all, mismatches, Map.of());
        } finally {
            for (FirecrackerVmm v : vmms) v.close();
            for (List<HostMemory> l : mems) for (HostMemory m : l) m.close();
        }
    }

    private static long address(List<HostMemory> regions, long quarter, long offset) {
        return offset < quarter ? regions.get(0).address() + offset : regions.get(1).address() + offset - quarter;
    }

    private static void shuffle(long[] a, Random r) {
        for (int i = a.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            long x = a[i];
            a[i] = a[j];
            a[j] = x;
        }
    }

    static long word(long offset) {
        return (offset * 0x9E3779B97F4A7C15L) ^ 0x5bd1e995L | 1;
    }

    static void writeMemoryFile(Path file, long bytes) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(1 << 20).order(ByteOrder.nativeOrder());
            for (long base = 0; base < bytes; base += b.capacity()) {
                b.clear();
                int n = (int) Math.min(b.capacity(), bytes - base);
                for (int o = 0; o < n; o += 8) b.putLong(word(base + o));
                b.flip();
                while (b.hasRemaining()) ch.write(b, base + b.position());
            }
        }
    }

    private Map<String, Object> summary(int vms, String pattern, List<Run> java, List<Run> c) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("vms", vms);
        m.put("pattern", pattern);
        m.put("faultline", side(java));
        if (!c.isEmpty()) {
            m.put("c_baseline", side(c));
            List<Double> ratios = new ArrayList<>();
            for (int i = 0; i < java.size(); i++) ratios.add(round(java.get(i).pagesPerSecond() / c.get(i).pagesPerSecond()));
            m.put("ratio_per_round", ratios);
            m.put("ratio_median", median(ratios));
        }
        long bad = 0;
        for (Run r : java) bad += r.mismatches();
        for (Run r : c) bad += r.mismatches();
        m.put("mismatches", bad);
        return m;
    }

    private static Map<String, Object> side(List<Run> runs) {
        Map<String, Object> m = new LinkedHashMap<>();
        List<Double> pps = runs.stream().map(r -> (double) Math.round(r.pagesPerSecond())).toList();
        m.put("pages_per_s_per_round", pps);
        m.put("pages_per_s_median", median(pps));
        Histogram all = new Histogram(LaneStats.MAX_NANOS, 3);
        for (Run r : runs) all.add(r.latency());
        m.put("touch_latency", PagingStats.percentiles(all));
        if (!runs.getLast().handlerFigures().isEmpty()) m.put("handler_last_round", runs.getLast().handlerFigures());
        return m;
    }

    private static double median(List<Double> v) {
        List<Double> s = new ArrayList<>(v);
        s.sort(null);
        int n = s.size();
        return n % 2 == 1 ? s.get(n / 2) : round((s.get(n / 2 - 1) + s.get(n / 2)) / 2);
    }

    private static double round(double v) { return Math.round(v * 1000) / 1000.0; }

    private void printText(int vms, String pattern, List<Run> java, List<Run> c) {
        Map<String, Object> s = summary(vms, pattern, java, c);
        Map<?, ?> j = (Map<?, ?>) s.get("faultline");
        Map<?, ?> jl = (Map<?, ?>) j.get("touch_latency");
        System.out.printf("%d VM(s) x %d threads, %s: faultline %s pages/s (p50 %s / p99 %s / p99.9 %s us)", vms, threads, pattern,
                j.get("pages_per_s_median"), jl.get("p50_us"), jl.get("p99_us"), jl.get("p999_us"));
        if (s.containsKey("c_baseline")) {
            Map<?, ?> cc = (Map<?, ?>) s.get("c_baseline");
            Map<?, ?> cl = (Map<?, ?>) cc.get("touch_latency");
            System.out.printf("; C %s pages/s (p50 %s / p99 %s / p99.9 %s us); ratio %s %s", cc.get("pages_per_s_median"), cl.get("p50_us"),
                    cl.get("p99_us"), cl.get("p999_us"), s.get("ratio_median"), s.get("ratio_per_round"));
        }
        System.out.printf("; mismatches %s%n", s.get("mismatches"));
    }

    private static List<Double> loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
            return List.of(Double.parseDouble(f[0]), Double.parseDouble(f[1]), Double.parseDouble(f[2]));
        } catch (IOException | RuntimeException e) {
            return List.of();
        }
    }
}
