package dev.faultline.cli;

import dev.faultline.paging.Prefetch;
import dev.faultline.snapshot.Restore;
import dev.faultline.snapshot.SnapshotDescription;
import dev.faultline.snapshot.SnapshotException;
import dev.faultline.vmm.ReportJson;
import dev.faultline.vmm.VcpuResult;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "restore", header = "Restores a snapshot lazily or eagerly on either backend and checks its end.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Restores a snapshot directory (written by 'snapshot') into a fresh machine on either backend and",
                "runs it to its end. The snapshot is checked before anything runs (format version, sizes, memslots,",
                "registers, page map, file lengths; chunk SHA-256s: all first with --eager or --verify upfront, else",
                "each chunk on its first touch, never installing a page of a chunk that fails). --eager reads all of",
                "memory first; --lazy starts at once and serves every first touch from the snapshot (kvm: through",
                "userfaultfd; ref: through exit on missing, each vCPU serving its own fault). Reports the time to the first guest instruction and to completion, and compares the end",
                "with the original run's (RAM SHA-256, each vCPU's end). Exit 0 when equal, 1 when not, 2 when refused."})
final class RestoreCommand implements Callable<Integer> {

    @Parameters(index = "0", paramLabel = "DIR", description = "The snapshot directory.")
    Path dir;

    static final class ModeChoice {
        @Option(names = "--lazy", required = true, description = "Start at once; memory is paged in on first touch.") boolean lazy;
        @Option(names = "--eager", required = true, description = "Read all of memory, then start.") boolean eager;
    }

    @ArgGroup(exclusive = true, multiplicity = "1")
    ModeChoice mode;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "kvm, ref, or auto (kvm where /dev/kvm works). Any backend restores any snapshot. Default: ${DEFAULT-VALUE}.")
    String backend;

    @Option(names = "--verify", paramLabel = "WHEN", description = "Lazy restores: on-touch (default; each chunk when first needed) or upfront.")
    String verify;

    @Option(names = "--prefetch", paramLabel = "KIND", defaultValue = "readahead",
            description = "Lazy restores: none or readahead (sequential, in the background). Default: ${DEFAULT-VALUE}.")
    String prefetch;

    @Option(names = "--handlers", paramLabel = "N", defaultValue = "1", description = "Lazy restores: userfaultfd handler threads. Default: ${DEFAULT-VALUE}.")
    int handlers;

    @Option(names = "--repeat", paramLabel = "N", defaultValue = "1",
            description = "Restore N times in this process and report each run's time to the first instruction (the later ones "
                    + "without class loading and JIT warm-up). Default: ${DEFAULT-VALUE}.")
    int repeat;

    @Option(names = "--timeout", paramLabel = "SECONDS", defaultValue = "300", description = "Stop the guest after this many seconds. Default: ${DEFAULT-VALUE}.")
    long timeoutSeconds;

    @Option(names = "--json", description = "Print one JSON object on stdout.")
    boolean json;

    @Override
    public Integer call() {
        long commandStart = System.nanoTime();
        long uptimeAtStart = ManagementFactory.getRuntimeMXBean().getUptime();
        if (repeat < 1) throw new UserError("--repeat must be at least 1");
        if (timeoutSeconds < 1) throw new UserError("--timeout must be at least 1 second");
        Restore.Mode m = mode.lazy ? Restore.Mode.LAZY : Restore.Mode.EAGER;
        Restore.Verify v = null;
        if (verify != null) {
            v = switch (verify) {
                case "upfront" -> Restore.Verify.UPFRONT;
                case "on-touch" -> Restore.Verify.ON_FIRST_TOUCH;
                default -> throw new UserError("--verify is upfront or on-touch, not '" + verify + "'");
            };
            if (m == Restore.Mode.EAGER && v != Restore.Verify.UPFRONT) throw new UserError("--eager always verifies every chunk upfront");
        }
        Prefetch p = switch (prefetch) {
            case "none" -> Prefetch.NONE;
            case "readahead" -> Prefetch.DEFAULT_READAHEAD;
            default -> throw new UserError("--prefetch is none or readahead, not '" + prefetch + "'");
        };
        Restore.Options o = new Restore.Options(backend, m, v, p, handlers, Duration.ofSeconds(timeoutSeconds), null);
        List<Double> firsts = new ArrayList<>();
        List<Map<String, Object>> perRun = new ArrayList<>();
        Restore.Result r = null;
        long firstRunStart = 0;
        for (int i = 0; i < repeat; i++) {
            long s = System.nanoTime();
            if (i == 0) firstRunStart = s;
            try {
                r = Restore.run(dir, o);
            } catch (SnapshotException e) {
                throw new UserError(e.getMessage());
            }
            firsts.add(r.timings().firstEntry() / 1e6);
            perRun.add(r.timings().toMap());
        }
        double fromCommand = (firstRunStart - commandStart) / 1e6 + firsts.get(0);
        if (json) {
            Json.print(System.out, tree(r, firsts, perRun, fromCommand, uptimeAtStart));
        } else {
            printText(r, firsts, fromCommand, uptimeAtStart);
        }
        return r.ok() ? 0 : 1;
    }

    private Map<String, Object> tree(Restore.Result r, List<Double> firsts, List<Map<String, Object>> perRun, double fromCommand,
                                     long uptimeAtStart) {
        Map<String, Object> t = new LinkedHashMap<>();
        SnapshotDescription d = r.snapshot();
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("dir", dir.toString());
        s.put("taken_on", d.backend());
        s.put("ram_bytes", d.ramBytes());
        s.put("vcpus", d.vcpus().size());
        s.put("stored_pages", d.memory().storedPages());
        s.put("point", SnapshotCommand.describe(d.point()));
        t.put("snapshot", s);
        t.put("backend", r.backend());
        t.put("mode", r.mode().name().toLowerCase());
        t.put("verify", r.verify() == Restore.Verify.UPFRONT ? "upfront" : "on-touch");
        if (r.mode() == Restore.Mode.LAZY) t.put("prefetch", prefetch);
        Map<String, Object> timings = new LinkedHashMap<>(r.timings().toMap());
        timings.put("command_to_first_instruction_ms", round(fromCommand));
        timings.put("jvm_uptime_at_command_start_ms", uptimeAtStart);
        if (firsts.size() > 1) timings.put("to_first_instruction_ms_per_repeat", firsts.stream().map(RestoreCommand::round).toList());
        t.put("timings", timings);
        if (perRun.size() > 1) t.put("timings_per_repeat", perRun);
        t.put("chunks_verified", r.chunksVerified());
        t.put("bytes_read", r.bytesRead());
        if (r.paging() != null) {
            Map<String, Object> pg = new LinkedHashMap<>();
            pg.put("faults", r.paging().faults());
            pg.put("pages_installed", r.paging().pagesInstalled());
            pg.put("prefetch_pages", r.paging().prefetchPages());
            t.put("paging", pg);
        }
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("original_run_recorded", r.comparison().recorded());
        if (d.originalRun() != null) c.put("expected_ram_sha256", d.originalRun().ramSha256());
        c.put("ram_sha256", r.report().ramSha256());
        c.put("ram_matches", r.comparison().ramMatches());
        c.put("vcpus_match", r.comparison().vcpusMatch());
        c.put("workload", r.comparison().workloadVerdict());
        c.put("verdict", r.comparison().verdict());
        t.put("comparison", c);
        if (r.failure() != null) t.put("failure", r.failure());
        t.put("ok", r.ok());
        t.put("run", ReportJson.of(r.report()));
        return t;
    }

    private void printText(Restore.Result r, List<Double> firsts, double fromCommand, long uptimeAtStart) {
        SnapshotDescription d = r.snapshot();
        Map<String, Object> tm = r.timings().toMap();
        System.out.printf("%s: %s restore of %s (taken on %s, %s RAM, %d vCPU(s)) on %s: %s%n", r.ok() ? "ok" : "FAILED",
                r.mode().name().toLowerCase(), dir, d.backend(), Units.formatSize(d.ramBytes()), d.vcpus().size(), r.backend(),
                r.comparison().verdict());
        System.out.printf("  first guest instruction %.3f ms after restore start (%.3f ms after the command started, JVM up %d ms then)%n",
                firsts.get(0), fromCommand, uptimeAtStart);
        if (firsts.size() > 1) System.out.printf("  per repeat: %s ms%n", firsts.stream().map(RestoreCommand::round).toList());
        System.out.printf("  check thread: description %s ms, files %s ms; alongside: backend %s ms, VM %s ms, vCPUs %s ms (waited %s ms for the "
                        + "description, %s ms for the checks)%n", tm.get("describe_ms"), tm.get("check_ms"), tm.get("backend_open_ms"),
                tm.get("vm_ms"), tm.get("vcpus_ms"), tm.get("description_wait_ms"), tm.get("check_wait_ms"));
        System.out.printf("  memory %s ms, paging %s ms, vCPU thread %s ms; completion %s ms (untouched pages copied in %s ms)%n",
                tm.get("memory_ms"), tm.get("paging_setup_ms"), tm.get("vcpu_thread_start_ms"), tm.get("to_completion_ms"),
                tm.get("copy_untouched_pages_ms"));
        System.out.printf("  %d chunks verified, %s read%s%n", r.chunksVerified(), Units.formatSize(r.bytesRead()),
                r.paging() == null ? "" : String.format(", %d faults, %d pages installed (%d prefetched)", r.paging().faults(),
                        r.paging().pagesInstalled(), r.paging().prefetchPages()));
        for (VcpuResult v : r.report().vcpus()) {
            System.out.printf("  vcpu %d: %s (%s), rip=0x%x%n", v.index(), v.outcome().name().toLowerCase(), v.detail(), v.regs().rip);
        }
        if (r.failure() != null) System.out.println("  failure: " + r.failure());
        System.out.printf("  RAM sha256 %s%n", r.report().ramSha256());
    }

    private static double round(double ms) {
        return Math.round(ms * 1000) / 1000.0;
    }
}
