package dev.faultline.cli;

import dev.faultline.migration.MigrationSource;
import dev.faultline.migration.ProtocolException;
import dev.faultline.transport.Transport;
import dev.faultline.vmm.Backends;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/** One migration of the demo: the destination is this program as a child process on loopback, this process the source. */
final class DemoRun {
    private DemoRun() {}

    /** What the demo migrates and how (the options of `demo`). */
    record Settings(Backends.Choice choice, long mem, int vcpus, long fill, long after, int precopyRounds, boolean priorities, String delivery) {}

    /**
     * @param outcome     the source's outcome (its summary holds the destination's report)
     * @param destination how the destination process ended: null when it exited 0, else what happened
     */
    record Result(SourceSide.Outcome outcome, String destination) {}

    /**
     * Starts the destination (with {@code destinationArgs}: its --tls-dir and --tls-allow, or --insecure),
     * migrates the demo's guest to it through {@code transport}, and waits for the destination to end.
     * @throws ProtocolException the migration failed; the message ends with what the destination printed on stderr
     */
    static Result run(Settings s, Transport transport, List<String> destinationArgs, Progress progress) throws IOException, InterruptedException {
        Process child = startDestination(s, destinationArgs);
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
            progress.phase("destination process " + child.pid() + " listens on 127.0.0.1:" + port
                    + (transport.secure() ? " (mutual TLS 1.3)" : " (plain TCP, --insecure)"));
            CompletableFuture<List<String>> errRest = CompletableFuture.supplyAsync(() -> err.lines().toList());
            CompletableFuture.runAsync(() -> new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))
                    .lines().forEach(l -> progress.phase("[destination] " + l.replaceFirst("^destination: ", ""))));
            MigrationSource.Options mo = new MigrationSource.Options("127.0.0.1", port, s.after(), s.precopyRounds(), 10_000, true, Duration.ofSeconds(120),
                    s.priorities(), 0);
            SourceSide.Outcome o;
            try {
                o = SourceSide.run(guest(s), source(), mo, transport, s.fill(), true, progress);
            } catch (ProtocolException e) {
                progress.done();
                child.waitFor(5, TimeUnit.SECONDS);
                String dest = errRest.isDone() ? String.join(" / ", errRest.join()) : "";
                throw new ProtocolException(e.getMessage() + (dest.isEmpty() ? "" : " (destination: " + dest + ")"), e);
            }
            progress.done();
            boolean childOk = child.waitFor(30, TimeUnit.SECONDS) && child.exitValue() == 0;
            return new Result(o, childOk ? null : child.isAlive() ? "no exit yet" : "exit code " + child.exitValue());
        } finally {
            if (child.isAlive()) {
                child.destroy();
                if (!child.waitFor(5, TimeUnit.SECONDS)) child.destroyForcibly();
            }
        }
    }

    /** The demo's guest: a working set moving through its memory ("phases"). */
    private static GuestOptions guest(Settings s) {
        GuestOptions opts = new GuestOptions();
        opts.backend = s.choice().name();
        opts.mem = s.mem();
        opts.vcpus = s.vcpus();
        opts.backing = "anonymous";
        opts.seed = 1;
        opts.stride = 8;
        opts.rounds = 40;
        opts.workingSet = 1024;
        opts.timeoutSeconds = 120;
        opts.maxExitLog = 0;
        return opts;
    }

    private static GuestOptions.Source source() {
        GuestOptions.Source src = new GuestOptions.Source();
        src.workload = "phases";
        return src;
    }

    /** The destination: this same program, as a child process, on a free loopback port. */
    private static Process startDestination(Settings s, List<String> transportArgs) throws IOException {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "dev.faultline.cli.Main", "migrate", "listen", "--port", "0", "--bind", "127.0.0.1", "--backend", s.choice().name(), "--guest-timeout", "120"));
        if (!s.priorities()) cmd.add("--no-priorities");
        if (s.choice().name().equals("kvm")) cmd.addAll(List.of("--delivery", s.delivery()));
        cmd.addAll(transportArgs);
        return new ProcessBuilder(cmd).start();
    }
}
