package dev.faultline.cli;

import dev.faultline.migration.ProtocolException;
import dev.faultline.transport.Transport;
import dev.faultline.vmm.Backends;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "demo", header = "The main job: a running guest migrates post-copy between two processes and is verified.",
        mixinStandardHelpOptions = true,
        description = {"The main job, end to end on the best backend this machine has (kvm where /dev/kvm works, the",
                "reference hypervisor elsewhere): a guest whose working set moves through its memory starts in this",
                "(source) process, migrates post-copy mid-run to a destination process started as a child on loopback,",
                "keeps running there and finishes. Prints progress, then downtime, total time, pages demanded and pushed,",
                "remote-fault latency percentiles and the verified RAM hash; writes a chart of the fault latencies.",
                "Every connection is mutual TLS 1.3, with a throwaway CA and certificates made in a temporary directory",
                "(removed at the end); --insecure runs plain TCP, --compare-tls both, and reports what TLS costs."})
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--json", description = "Print one JSON object (the figures) on stdout.")
    boolean json;

    @Option(names = "--mem", paramLabel = "SIZE", converter = Units.SizeConverter.class, defaultValue = "1G",
            description = "Guest RAM. Default: ${DEFAULT-VALUE}.")
    long mem;

    @Option(names = "--vcpus", paramLabel = "N", defaultValue = "2", description = "vCPUs. Default: ${DEFAULT-VALUE}.")
    int vcpus;

    @Option(names = "--fill", paramLabel = "SIZE", converter = Units.SizeConverter.class, defaultValue = "128M",
            description = "Non-zero data the guest holds before it starts. Default: ${DEFAULT-VALUE}.")
    long fill;

    @Option(names = "--after", paramLabel = "MS", defaultValue = "300",
            description = "How long the guest runs on the source before it migrates. Default: ${DEFAULT-VALUE}.")
    long after;

    @Option(names = "--precopy-rounds", paramLabel = "N", defaultValue = "0", description = "Pre-copy rounds first (0: pure post-copy). Default: ${DEFAULT-VALUE}.")
    int precopyRounds;

    @Option(names = "--chart-dir", paramLabel = "DIR", defaultValue = "faultline-demo",
            description = "Where the chart goes. Default: ${DEFAULT-VALUE}.")
    Path chartDir;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto", description = "kvm, ref or auto. Default: ${DEFAULT-VALUE}.")
    String backend;

    @Option(names = "--delivery", paramLabel = "KIND", defaultValue = "uffd",
            description = "kvm: how the destination serves a fault of the migrated guest: uffd (a userfaultfd handler thread fetches "
                    + "the page while the vCPU sleeps) or exit (the vCPU fetches it itself after a memory-fault exit). ref always "
                    + "serves faults on the vCPU. Default: ${DEFAULT-VALUE}.")
    String delivery;

    @Mixin
    PriorityOptions priorities;

    @Option(names = "--insecure", description = "Plain TCP between the two processes (no TLS).")
    boolean insecure;

    @Option(names = "--compare-tls",
            description = "Run the migration over TLS and over plain TCP (--rounds pairs, interleaved) and report what TLS costs: total time, "
                    + "downtime and remote-fault p50/p99 per vCPU, the medians of each and their ratios.")
    boolean compareTls;

    @Option(names = "--rounds", paramLabel = "N", defaultValue = "1",
            description = "With --compare-tls: how many TLS/plain pairs (1 to 50), alternating which goes first. Default: ${DEFAULT-VALUE}.")
    int rounds;

    @Override
    public Integer call() throws IOException, InterruptedException {
        Backends.Choice choice = backend.equals("auto") ? Backends.best() : new Backends.Choice(backend, "asked for with --backend");
        if (!delivery.equals("uffd") && !delivery.equals("exit")) throw new UserError("--delivery is uffd or exit, not '" + delivery + "'");
        if (delivery.equals("exit") && choice.name().equals("ref")) {
            throw new UserError("--delivery exit is for kvm; the backend here is ref (" + choice.why() + "), which serves every fault on the vCPU already");
        }
        if (compareTls && insecure) throw new UserError("--compare-tls runs both TLS and plain TCP; leave out --insecure");
        if (!compareTls && rounds != 1) throw new UserError("--rounds is for --compare-tls");
        if (rounds < 1 || rounds > 50) throw new UserError("--rounds must be 1 to 50, got " + rounds);
        DemoRun.Settings settings = new DemoRun.Settings(choice, mem, vcpus, fill, after, precopyRounds, priorities.raise(), delivery);
        Progress progress = new Progress(json);
        progress.phase("faultline demo: backend " + choice.name() + ": " + choice.why());
        try (DemoCertificates certs = insecure ? null : DemoCertificates.make()) {
            return compareTls ? compare(settings, certs, progress) : once(settings, certs, progress);
        }
    }

    /** One migration, over TLS with {@code certs} (null: plain TCP); prints its summary and writes the chart. */
    private int once(DemoRun.Settings settings, DemoCertificates certs, Progress progress) throws IOException, InterruptedException {
        DemoRun.Result r;
        try {
            r = run(settings, certs, progress);
        } catch (ProtocolException e) {
            System.err.println("faultline demo: migration failed: " + e.getMessage());
            return 1;
        }
        SourceSide.Outcome o = r.outcome();
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("backend_choice", Map.of("backend", settings.choice().name(), "why", settings.choice().why()));
        summary.putAll(o.summary());
        try {
            List<Path> files = DemoChart.write(chartDir, SourceSide.map(o.summary().get("destination")),
                    settings.choice().name() + ", " + Units.formatSize(mem) + ", " + vcpus + " vCPUs");
            summary.put("chart", files.stream().map(p -> p.toAbsolutePath().toString()).toList());
        } catch (IOException | RuntimeException | LinkageError e) {
            summary.put("chart", "not written: " + e);
        }
        if (json) {
            Json.print(System.out, summary);
        } else {
            Summary.print(System.out, summary);
            Object chart = summary.get("chart");
            System.out.println("  chart            " + (chart instanceof List<?> l ? String.join(", ", l.stream().map(String::valueOf).toList()) : chart));
            if (r.destination() != null) System.out.println("  (the destination process ended with " + r.destination() + ")");
        }
        return o.ok() ? 0 : 1;
    }

    /** --compare-tls: {@link #rounds} pairs of runs, TLS and plain, alternating which goes first. */
    private int compare(DemoRun.Settings settings, DemoCertificates certs, Progress progress) throws IOException, InterruptedException {
        TlsComparison c = new TlsComparison(settings.choice().name() + ", " + Units.formatSize(mem) + ", " + vcpus + " vCPUs, "
                + Units.formatSize(fill) + " of data");
        String loadBefore = loadAverage();
        for (int round = 0; round < rounds; round++) {
            for (int k = 0; k < 2; k++) {
                boolean tls = TlsComparison.tlsFirst(round) == (k == 0);
                progress.phase("round " + (round + 1) + " of " + rounds + ": " + (tls ? "TLS" : "plain TCP"));
                DemoRun.Result r;
                try {
                    r = run(settings, tls ? certs : null, progress);
                } catch (ProtocolException e) {
                    System.err.println("faultline demo: migration failed (round " + (round + 1) + ", " + (tls ? "TLS" : "plain TCP") + "): " + e.getMessage());
                    return 1;
                }
                c.add(tls, r.outcome().summary());
            }
        }
        Map<String, Object> context = new LinkedHashMap<>();
        context.put("backend_choice", Map.of("backend", settings.choice().name(), "why", settings.choice().why()));
        context.put("load_average", List.of(loadBefore, loadAverage()));
        if (json) Json.print(System.out, c.toMap(context));
        else c.print(System.out, context);
        return c.verified() ? 0 : 1;
    }

    private static DemoRun.Result run(DemoRun.Settings settings, DemoCertificates certs, Progress progress) throws IOException, InterruptedException {
        Transport t = certs == null ? Transport.insecure() : certs.source();
        List<String> args = certs == null ? List.of("--insecure") : certs.destinationArgs();
        return DemoRun.run(settings, t, args, progress);
    }

    /** The 1-minute load average (/proc/loadavg), or "unknown": the comparison says how loaded the host was. */
    private static String loadAverage() {
        try {
            return new String(Files.readAllBytes(Path.of("/proc/loadavg")), StandardCharsets.US_ASCII).split(" ")[0];
        } catch (IOException | RuntimeException e) {
            return "unknown";
        }
    }
}
