package dev.faultline.cli;

import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.MetricsServer;
import io.prometheus.metrics.model.registry.MultiCollector;
import java.io.PrintWriter;
import picocli.CommandLine.Option;

/** --metrics-port, --metrics-bind and --events, shared by the commands that serve guests for a platform (serve, uffd-handler, migrate listen). */
final class TelemetryOptions {
    @Option(names = "--metrics-port", paramLabel = "PORT",
            description = "Serve Prometheus metrics on this TCP port at /metrics (0: any free port, printed on stderr). Default: no metrics.")
    Integer metricsPort;

    @Option(names = "--metrics-bind", paramLabel = "ADDRESS", defaultValue = "127.0.0.1",
            description = "The address the metrics port listens on. Default: ${DEFAULT-VALUE} (this host only).")
    String metricsBind;

    @Option(names = "--events", paramLabel = "FILE|-",
            description = "Write events (connections, restores, migration phases, failures) as JSON lines to FILE (appended; created "
                    + "with mode 0600; never through a symbolic link) or to standard output (-).")
    String events;

    /** The event log asked for (NONE without --events). */
    EventLog openEvents() {
        if (events == null) return EventLog.NONE;
        if (events.isBlank()) throw new UserError("--events needs a file or - (standard output)");
        try {
            return EventLog.open(events);
        } catch (IllegalArgumentException e) {
            throw new UserError("--events: " + e.getMessage());
        }
    }

    /** The metrics server asked for, or null; its port is said on {@code err}. */
    MetricsServer startMetrics(String command, PrintWriter err, MultiCollector... collectors) {
        if (metricsPort == null) return null;
        if (metricsPort < 0 || metricsPort > 65535) throw new UserError("--metrics-port " + metricsPort + " is not a TCP port (0-65535)");
        try {
            MetricsServer m = MetricsServer.start(metricsBind, metricsPort, collectors);
            err.println("faultline " + command + ": metrics on http://" + metricsBind + ":" + m.port() + "/metrics");
            err.flush();
            return m;
        } catch (IllegalArgumentException e) {
            throw new UserError("--metrics-port: " + e.getMessage());
        }
    }
}
