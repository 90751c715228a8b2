package dev.faultline.cli;

import dev.faultline.paging.Prefetch;
import dev.faultline.service.RestoreClient;
import dev.faultline.service.ServiceRequest;
import dev.faultline.snapshot.Restore;
import dev.faultline.snapshot.RestoreReport;
import dev.faultline.snapshot.SnapshotException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

@Command(name = "restore", header = "Restores a snapshot lazily or eagerly on either backend and checks its end.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Restores a snapshot directory (written by 'snapshot') into a fresh machine on either backend and",
                "runs it to its end. The snapshot is checked before anything runs (format version, sizes, memslots,",
                "registers, page map, file lengths; chunk SHA-256s: all first with --eager or --verify upfront, else",
                "each chunk on its first touch, never installing a page of a chunk that fails). --eager reads all of",
                "memory first; --lazy starts at once and serves every first touch from the snapshot (kvm: through",
                "userfaultfd handler threads, or with --delivery exit on each vCPU's own thread after a memory-fault",
                "exit; ref: through exit on missing, each vCPU serving its own fault). Reports the time to the",
                "first guest instruction and to completion, and compares the end with the original run's (RAM SHA-256,",
                "each vCPU's end). Exit 0 when equal, 1 when not, 2 when refused.",
                "",
                "With --server the restore runs in a restore service started ahead ('faultline serve'), warmed up, as a",
                "VMM process that waits for a snapshot load is; a fresh JVM's first restore pays for class loading,",
                "linking and the JIT (docs/snapshot.md compares the two)."})
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
            description = "Lazy restores: none, readahead (sequential, in the background), or replay:FILE (the working set an earlier "
                    + "restore recorded with --record-working-set, installed in the background from the start, first touch first; kvm, "
                    + "delivery uffd). Default: ${DEFAULT-VALUE} (none with --record-working-set).")
    String prefetch;

    @Option(names = "--record-working-set", paramLabel = "FILE",
            description = "Lazy restores: record the pages the guest touches (first touch first) and write them to FILE after the run, "
                    + "for --prefetch replay:FILE next time. Every touch must fault to be seen: the restore runs with --prefetch none.")
    Path recordWorkingSet;

    @Option(names = "--record-ms", paramLabel = "MS", defaultValue = "0",
            description = "Record only the first MS milliseconds after the handler starts (0: the whole run). Default: ${DEFAULT-VALUE}.")
    long recordMs;

    @Option(names = "--uffd-handler", paramLabel = "SOCKET",
            description = "Lazy restores on kvm: hand guest RAM to the external page-fault handler listening on SOCKET, exactly as Firecracker "
                    + "does (its userfaultfd and regions in one message; e.g. 'faultline uffd-handler --snapshot DIR'), instead of serving "
                    + "faults in this process.")
    Path uffdHandler;

    @Option(names = "--handlers", paramLabel = "N", defaultValue = "1", description = "Lazy restores: userfaultfd handler threads. Default: ${DEFAULT-VALUE}.")
    int handlers;

    @Option(names = "--delivery", paramLabel = "KIND",
            description = "Lazy restores: uffd (kvm: handler threads serve while the vCPU sleeps in the kernel) or exit (each vCPU serves "
                    + "its own memory-fault exit; its readahead windows are installed by the faulting vCPU). Default: uffd on kvm, "
                    + "exit on ref (its only way).")
    String delivery;

    @Option(names = "--repeat", paramLabel = "N", defaultValue = "1",
            description = "Restore N times in this process and report each run's time to the first instruction (the later ones "
                    + "without class loading and JIT warm-up). Default: ${DEFAULT-VALUE}.")
    int repeat;

    @Option(names = "--timeout", paramLabel = "SECONDS", defaultValue = "300", description = "Stop the guest after this many seconds. Default: ${DEFAULT-VALUE}.")
    long timeoutSeconds;

    @Option(names = "--server", paramLabel = "SOCKET",
            description = "Send the restore to the restore service listening on this Unix socket ('faultline serve') instead of "
                    + "restoring in this process. The backend defaults to the service's.")
    Path server;

    @Option(names = "--json", description = "Print one JSON object on stdout.")
    boolean json;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        long commandStart = System.nanoTime();
        long uptimeAtStart = ManagementFactory.getRuntimeMXBean().getUptime();
        if (repeat < 1) throw new UserError("--repeat must be at least 1");
        if (timeoutSeconds < 1) throw new UserError("--timeout must be at least 1 second");
        if (handlers < 1) throw new UserError("--handlers must be at least 1");
        Restore.Mode m = mode.lazy ? Restore.Mode.LAZY : Restore.Mode.EAGER;
        Restore.Verify v = null;
        if (verify != null) {
            v = named("--verify", () -> Restore.Verify.named(verify));
            if (m == Restore.Mode.EAGER && v != Restore.Verify.UPFRONT) throw new UserError("--eager always verifies every chunk upfront");
        }
        boolean prefetchGiven = spec.commandLine().getParseResult().hasMatchedOption("--prefetch");
        if (recordMs < 0 || recordMs > 86_400_000L) throw new UserError("--record-ms takes 0 (whole run) to 86400000, not " + recordMs);
        if (recordMs > 0 && recordWorkingSet == null) throw new UserError("--record-ms needs --record-working-set FILE");
        if ((recordWorkingSet != null || uffdHandler != null) && !prefetchGiven) prefetch = "none";
        if (recordWorkingSet != null && !prefetch.equals("none")) {
            throw new UserError("--record-working-set records the pages the guest faults on; with --prefetch " + prefetch + " pages installed "
                    + "ahead of a touch are never seen: use --prefetch none");
        }
        if (uffdHandler != null && (m != Restore.Mode.LAZY || !prefetch.equals("none") || recordWorkingSet != null || server != null)) {
            throw new UserError("--uffd-handler hands a lazy restore's RAM to an external handler, which does its own prefetch and recording: "
                    + "no --eager, --prefetch, --record-working-set or --server with it");
        }
        if (prefetch.startsWith("replay:") && server != null && !Path.of(prefetch.substring(7)).isAbsolute()) {
            throw new UserError("--prefetch replay:FILE with --server needs an absolute FILE (the service resolves no relative path)");
        }
        Prefetch p;
        try {
            p = server != null && prefetch.startsWith("replay:") ? Prefetch.NONE : named("--prefetch", () -> Restore.prefetchNamed(prefetch));
        } catch (dev.faultline.paging.PageSourceException e) {
            throw new UserError("--prefetch: " + e.getMessage());
        }
        Restore.Delivery d = delivery == null ? null : named("--delivery", () -> Restore.Delivery.named(delivery));
        if (d != null && m == Restore.Mode.EAGER) throw new UserError("--delivery is for lazy restores; an eager one reads all of memory before it starts");
        if (d == Restore.Delivery.EXIT && handlers > 1) {
            throw new UserError("--handlers " + handlers + " with --delivery exit: each vCPU serves its own faults, and one handler thread serves "
                    + "host threads' faults only");
        }
        if (d == Restore.Delivery.UFFD && backend.equals("ref")) throw new UserError("--delivery uffd: the ref backend has no userfaultfd; use exit");
        if (server != null) return viaService(m, v);
        if (d == Restore.Delivery.EXIT) ExitDeliveryCheck.require(backend, "--delivery exit");
        Restore.Options o;
        try {
            o = new Restore.Options(backend, m, v, p, handlers, Duration.ofSeconds(timeoutSeconds), null).withDelivery(d)
                    .withRecording(recordWorkingSet == null ? null : new Restore.Recording(recordWorkingSet, recordMs)).withUffdHandler(uffdHandler);
        } catch (IllegalArgumentException e) {
            throw new UserError(e.getMessage());
        }
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
        Map<String, Object> tree = RestoreReport.of(dir, r, p);
        @SuppressWarnings("unchecked")
        Map<String, Object> timings = (Map<String, Object>) tree.get("timings");
        timings.put("command_to_first_instruction_ms", round(fromCommand));
        timings.put("jvm_uptime_at_command_start_ms", uptimeAtStart);
        if (firsts.size() > 1) {
            timings.put("to_first_instruction_ms_per_repeat", firsts.stream().map(RestoreCommand::round).toList());
            tree.put("timings_per_repeat", perRun);
        }
        if (json) {
            Json.print(System.out, tree);
        } else {
            printText(tree, String.format(" (%.3f ms after the command started, JVM up %d ms then)", fromCommand, uptimeAtStart));
            if (firsts.size() > 1) System.out.printf("  per repeat: %s ms%n", firsts.stream().map(RestoreCommand::round).toList());
        }
        return r.ok() ? 0 : 1;
    }

    /** --server: each of the --repeat restores is one request to the service; its replies are printed as a local restore's. */
    private int viaService(Restore.Mode m, Restore.Verify v) {
        boolean backendGiven = spec.commandLine().getParseResult().hasMatchedOption("--backend");
        String line = ServiceRequest.restoreLine(dir, m, backendGiven ? backend : null, v, prefetch, handlers, delivery, timeoutSeconds,
                recordWorkingSet == null ? null : recordWorkingSet.toAbsolutePath(), recordMs);
        List<Map<String, Object>> replies = new ArrayList<>();
        List<Double> roundTrips = new ArrayList<>();
        try (RestoreClient client = RestoreClient.connect(server)) {
            for (int i = 0; i < repeat; i++) {
                long s = System.nanoTime();
                Map<String, Object> reply = client.send(line);
                roundTrips.add(round((System.nanoTime() - s) / 1e6));
                if (!Boolean.TRUE.equals(reply.get("ok")) && reply.containsKey("error_kind")) {
                    throw new UserError("the restore service at " + server + " answered " + reply.get("error_kind") + ": " + reply.get("error"));
                }
                replies.add(reply);
            }
        } catch (IllegalArgumentException | UncheckedIOException e) {
            throw new UserError(e.getMessage());
        }
        Map<String, Object> last = replies.getLast();
        @SuppressWarnings("unchecked")
        Map<String, Object> svc = (Map<String, Object>) last.get("service");
        svc.put("client_round_trip_ms", roundTrips.getLast());
        if (repeat > 1) {
            svc.put("request_to_first_instruction_ms_per_repeat", replies.stream().map(r -> ((Map<?, ?>) r.get("service")).get("request_to_first_instruction_ms")).toList());
            svc.put("client_round_trip_ms_per_repeat", roundTrips);
        }
        if (json) {
            Json.print(System.out, last);
        } else {
            printText(last, String.format("; %s ms after the request reached the service at %s (queued %s ms; round trip %s ms)",
                    svc.get("request_to_first_instruction_ms"), server, svc.get("queued_ms"), svc.get("client_round_trip_ms")));
            if (repeat > 1) System.out.printf("  per repeat: %s ms%n", svc.get("request_to_first_instruction_ms_per_repeat"));
        }
        for (Map<String, Object> r : replies) if (!Boolean.TRUE.equals(r.get("ok"))) return 1;
        return 0;
    }

    private interface Naming<T> { T get(); }

    private static <T> T named(String option, Naming<T> n) {
        try {
            return n.get();
        } catch (IllegalArgumentException e) {
            throw new UserError(option + " is " + e.getMessage());
        }
    }

    /** The text form of a restore's report ({@link RestoreReport}), whether restored here or by a service. */
    private void printText(Map<String, Object> t, String firstInstructionMore) {
        Map<?, ?> s = (Map<?, ?>) t.get("snapshot");
        Map<?, ?> tm = (Map<?, ?>) t.get("timings");
        Map<?, ?> c = (Map<?, ?>) t.get("comparison");
        Map<?, ?> run = (Map<?, ?>) t.get("run");
        boolean ok = Boolean.TRUE.equals(t.get("ok"));
        System.out.printf("%s: %s restore of %s (taken on %s, %s RAM, %s vCPU(s)) on %s: %s%n", ok ? "ok" : "FAILED", t.get("mode"), s.get("dir"),
                s.get("taken_on"), Units.formatSize(((Number) s.get("ram_bytes")).longValue()), s.get("vcpus"), t.get("backend"), c.get("verdict"));
        System.out.printf("  first guest instruction %s ms after the restore started%s%n", tm.get("to_first_instruction_ms"), firstInstructionMore);
        System.out.printf("  check thread: description %s ms, files %s ms; alongside: backend %s ms, VM %s ms, vCPUs %s ms (waited %s ms for the "
                        + "description, %s ms for the checks)%n", tm.get("describe_ms"), tm.get("check_ms"), tm.get("backend_open_ms"),
                tm.get("vm_ms"), tm.get("vcpus_ms"), tm.get("description_wait_ms"), tm.get("check_wait_ms"));
        System.out.printf("  memory %s ms, paging %s ms, vCPU thread %s ms; completion %s ms (untouched pages copied in %s ms)%n",
                tm.get("memory_ms"), tm.get("paging_setup_ms"), tm.get("vcpu_thread_start_ms"), tm.get("to_completion_ms"),
                tm.get("copy_untouched_pages_ms"));
        Map<?, ?> pg = (Map<?, ?>) t.get("paging");
        System.out.printf("  %s chunks verified, %s read%s%n", t.get("chunks_verified"), Units.formatSize(((Number) t.get("bytes_read")).longValue()),
                pg == null ? "" : String.format(", %s faults (delivery %s), %s pages installed (%s prefetched)", pg.get("faults"),
                        t.get("delivery"), pg.get("pages_installed"), pg.get("prefetch_pages")));
        for (Object o : (List<?>) run.get("vcpus")) {
            Map<?, ?> v = (Map<?, ?>) o;
            System.out.printf("  vcpu %s: %s (%s), rip=%s%n", v.get("index"), v.get("outcome"), v.get("detail"), ((Map<?, ?>) v.get("regs")).get("rip"));
        }
        if (t.get("failure") != null) System.out.println("  failure: " + t.get("failure"));
        System.out.printf("  RAM sha256 %s%n", run.get("ram_sha256"));
    }

    private static double round(double ms) {
        return Math.round(ms * 1000) / 1000.0;
    }
}
