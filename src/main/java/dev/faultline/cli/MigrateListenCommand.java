package dev.faultline.cli;

import dev.faultline.migration.MigrationDestination;
import dev.faultline.migration.ProtocolException;
import dev.faultline.transport.Transport;
import java.io.IOException;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.Callable;
import dev.faultline.paging.FaultCore;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.MetricsServer;
import dev.faultline.telemetry.PagingMetrics;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "listen", header = "The destination side of a migration: receives a guest and runs it to its end.",
        mixinStandardHelpOptions = true,
        description = {"The destination: waits for one source, receives its guest and runs it to the end, demand-paging",
                "its memory from the source (post-copy) where the backend can (kvm with userfaultfd), else copying it first.",
                "Prints 'listening on HOST:PORT' on stderr once it accepts connections. Every connection is mutual TLS 1.3",
                "(--tls-dir, --tls-allow), or plain TCP on loopback with --insecure."},
        footer = {"%n" + TlsOptions.SETUP})
final class MigrateListenCommand implements Callable<Integer> {
    /** The migrated guest's demand paging as a live metrics subject while it runs. */
    private static final class MigrationMetrics {
        private final PagingMetrics metrics;
        private volatile PagingMetrics.Subject subject;

        MigrationMetrics(PagingMetrics metrics) { this.metrics = metrics; }

        void started(FaultCore core) {
            PagingMetrics.Subject s = new PagingMetrics.Subject() {
                @Override public String name() { return "migration"; }
                @Override public FaultCore core() { return core; }
            };
            subject = s;
            metrics.add(s);
        }

        void ended() {
            PagingMetrics.Subject s = subject;
            if (s != null) metrics.retire(s);
            subject = null;
        }
    }

    @Option(names = "--port", paramLabel = "PORT", defaultValue = "7070", description = "TCP port (0: any free port). Default: ${DEFAULT-VALUE}.")
    int port;

    @Option(names = "--bind", paramLabel = "ADDRESS", defaultValue = "127.0.0.1", description = "Address to listen on. Default: ${DEFAULT-VALUE}.")
    String bind;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto", description = "kvm, ref or auto. Default: ${DEFAULT-VALUE}.")
    String backend;

    @Option(names = "--timeout-ms", paramLabel = "MS", defaultValue = "10000",
            description = "How long the source may stay silent when a message is due. Default: ${DEFAULT-VALUE}.")
    int timeoutMillis;

    @Option(names = "--guest-timeout", paramLabel = "SECONDS", defaultValue = "300",
            description = "Stop the migrated guest after this many seconds. Default: ${DEFAULT-VALUE}.")
    long guestTimeout;

    @Mixin
    PriorityOptions priorities;

    @Mixin
    TlsOptions tls;

    @Option(names = "--delivery", paramLabel = "KIND", defaultValue = "uffd",
            description = "kvm: how a fault of the migrated guest is served: uffd (a userfaultfd handler thread fetches the page while "
                    + "the vCPU sleeps) or exit (the vCPU fetches it itself after a memory-fault exit, over its own urgent "
                    + "connection). ref always serves faults on the vCPU. Default: ${DEFAULT-VALUE}.")
    String delivery;

    @Option(names = "--json", description = "Print this side's report as one JSON object on stdout.")
    boolean json;

    @Mixin
    TelemetryOptions telemetry;

    @Override
    public Integer call() throws IOException {
        if (!backend.equals("auto") && !backend.equals("kvm") && !backend.equals("ref")) {
            throw new UserError("--backend must be kvm, ref or auto, got '" + backend + "'");
        }
        if (!delivery.equals("uffd") && !delivery.equals("exit")) throw new UserError("--delivery is uffd or exit, not '" + delivery + "'");
        boolean exits = delivery.equals("exit");
        if (exits && backend.equals("ref")) throw new UserError("--delivery exit is for kvm; ref serves every fault on the vCPU already");
        Transport transport = tls.transport(bind, "--bind");
        if (exits) ExitDeliveryCheck.require(backend, "--delivery exit");   // also one clear line where /dev/kvm is missing
        else if (backend.equals("kvm")) dev.faultline.vmm.Backends.open("kvm").close(); // one clear line where /dev/kvm is missing
        EventLog events = telemetry.openEvents();
        PagingMetrics metrics = new PagingMetrics();
        MigrationDestination d = new MigrationDestination(new MigrationDestination.Options(backend, timeoutMillis, Duration.ofSeconds(guestTimeout),
                priorities.raise(), exits), transport,
                line -> {
                    events.emit("migration", "phase", line);
                    if (!json) { System.out.println(line); System.out.flush(); }
                });
        MigrationMetrics watch = new MigrationMetrics(metrics);
        d.onPaging(watch::started);
        try (events; MetricsServer m = telemetry.startMetrics("migrate listen", new java.io.PrintWriter(System.err, true), metrics);
             ServerSocket server = MigrationDestination.listen(bind, port)) {
            events.emit("listening", "address", bind + ":" + server.getLocalPort(), "metrics_port", m == null ? null : m.port());
            System.err.println("faultline migrate listen: " + transport.describe());
            System.err.println("faultline migrate listen: listening on " + bind + ":" + server.getLocalPort());
            System.err.flush();
            Map<String, Object> report;
            try {
                report = d.serve(server);
            } catch (ProtocolException e) {
                System.err.println("faultline migrate listen: migration failed: " + e.getMessage());
                metrics.error("migration-failed");
                events.emit("failure", "reason", e.getMessage());
                return 1;
            } finally {
                watch.ended();
            }
            events.emit("migration_end", "guest_clean", report.get("guest_clean"), "verdict", report.get("verdict"));
            if (json) {
                Json.print(System.out, report);
            } else {
                System.out.printf("destination: guest %s, RAM sha256 %s; source's verdict: %s%n",
                        Boolean.TRUE.equals(report.get("guest_clean")) ? "finished" : "did NOT finish cleanly", report.get("ram_sha256"), report.get("verdict"));
            }
            return Boolean.TRUE.equals(report.get("guest_clean")) && "verified".equals(report.get("verdict")) ? 0 : 1;
        }
    }
}
