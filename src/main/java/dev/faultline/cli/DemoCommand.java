package dev.faultline.cli;

import dev.faultline.migration.MigrationSource;
import dev.faultline.migration.ProtocolException;
import dev.faultline.vmm.Backends;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "demo", header = "The main job: a running guest migrates post-copy between two processes and is verified.",
        mixinStandardHelpOptions = true,
        description = {"The main job, end to end on the best backend this machine has (kvm where /dev/kvm works, the",
                "reference hypervisor elsewhere): a guest whose working set moves through its memory starts in this",
                "(source) process, migrates post-copy mid-run to a destination process started as a child on loopback,",
                "keeps running there and finishes. Prints progress, then downtime, total time, pages demanded and pushed,",
                "remote-fault latency percentiles and the verified RAM hash; writes a chart of the fault latencies."})
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

    @Override
    public Integer call() throws IOException, InterruptedException {
        Backends.Choice choice = backend.equals("auto") ? Backends.best() : new Backends.Choice(backend, "asked for with --backend");
        if (!delivery.equals("uffd") && !delivery.equals("exit")) throw new UserError("--delivery is uffd or exit, not '" + delivery + "'");
        if (delivery.equals("exit") && choice.name().equals("ref")) {
            throw new UserError("--delivery exit is for kvm; the backend here is ref (" + choice.why() + "), which serves every fault on the vCPU already");
        }
        Progress progress = new Progress(json);
        progress.phase("faultline demo: backend " + choice.name() + ": " + choice.why());
        Process child = startDestination(choice.name(), priorities.raise(), delivery);
        try {
            BufferedReader err = new BufferedReader(new InputStreamReader(child.getErrorStream(), StandardCharsets.UTF_8));
            int port = -1;
            List<String> childErr = new ArrayList<>();
            String line;
            while ((line = err.readLine()) != null) {
                childErr.add(line);
                int at = line.indexOf("listening on ");
                if (at >= 0) {
                    port = Integer.parseInt(line.substring(line.lastIndexOf(':') + 1).trim());
                    break;
                }
            }
            if (port < 0) throw new UserError("the destination process did not start: " + String.join(" / ", childErr));
            progress.phase("destination process " + child.pid() + " listens on 127.0.0.1:" + port);
            CompletableFuture<List<String>> errRest = CompletableFuture.supplyAsync(() -> err.lines().toList());
            CompletableFuture.runAsync(() -> new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))
                    .lines().forEach(l -> progress.phase("[destination] " + l.replaceFirst("^destination: ", ""))));

            GuestOptions opts = new GuestOptions();
            opts.backend = choice.name();
            opts.mem = mem;
            opts.vcpus = vcpus;
            opts.backing = "anonymous";
            opts.seed = 1;
            opts.stride = 8;
            opts.rounds = 40;
            opts.workingSet = 1024;
            opts.timeoutSeconds = 120;
            opts.maxExitLog = 0;
            GuestOptions.Source src = new GuestOptions.Source();
            src.workload = "phases";
            MigrationSource.Options mo = new MigrationSource.Options("127.0.0.1", port, after, precopyRounds, 10_000, true, Duration.ofSeconds(120),
                    priorities.raise(), 0);
            SourceSide.Outcome o;
            try {
                o = SourceSide.run(opts, src, mo, fill, true, progress);
            } catch (ProtocolException e) {
                progress.done();
                child.waitFor(5, TimeUnit.SECONDS);
                String dest = errRest.isDone() ? String.join(" / ", errRest.join()) : "";
                System.err.println("faultline demo: migration failed: " + e.getMessage() + (dest.isEmpty() ? "" : " (destination: " + dest + ")"));
                return 1;
            }
            progress.done();
            Map<String, Object> summary = new LinkedHashMap<>();
            summary.put("backend_choice", Map.of("backend", choice.name(), "why", choice.why()));
            summary.putAll(o.summary());
            try {
                List<Path> files = DemoChart.write(chartDir, SourceSide.map(o.summary().get("destination")),
                        choice.name() + ", " + Units.formatSize(mem) + ", " + vcpus + " vCPUs");
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
            }
            boolean childOk = child.waitFor(30, TimeUnit.SECONDS) && child.exitValue() == 0;
            if (!childOk && !json) System.out.println("  (the destination process ended with " + (child.isAlive() ? "no exit yet" : "exit code " + child.exitValue()) + ")");
            return o.ok() ? 0 : 1;
        } finally {
            if (child.isAlive()) {
                child.destroy();
                if (!child.waitFor(5, TimeUnit.SECONDS)) child.destroyForcibly();
            }
        }
    }

    /** The destination: this same program, as a child process, on a free loopback port. */
    private static Process startDestination(String backend, boolean priorities, String delivery) throws IOException {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "dev.faultline.cli.Main", "migrate", "listen", "--port", "0", "--bind", "127.0.0.1", "--backend", backend, "--guest-timeout", "120"));
        if (!priorities) cmd.add("--no-priorities");
        if (backend.equals("kvm")) cmd.addAll(List.of("--delivery", delivery));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        return pb.start();
    }
}
