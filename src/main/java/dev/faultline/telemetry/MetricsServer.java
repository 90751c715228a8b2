package dev.faultline.telemetry;

import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.net.InetAddress;

/**
 * An HTTP endpoint a Prometheus server scrapes ({@code /metrics}, text exposition format), serving
 * faultline's own registry only (no JVM metrics unless added). Bound to one address (127.0.0.1 by
 * default, so only this host reaches it); scrapes run on the server's own small thread pool.
 */
public final class MetricsServer implements AutoCloseable {
    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final HTTPServer server;

    private MetricsServer(String bind, int port, MultiCollector... collectors) throws IOException {
        for (MultiCollector c : collectors) registry.register(c);
        server = HTTPServer.builder().inetAddress(InetAddress.getByName(bind)).port(port).registry(registry).buildAndStart();
    }

    /**
     * Serves {@code collectors} on {@code bind}:{@code port} (0: any free port, see {@link #port}).
     * @throws IllegalArgumentException one line naming the address and the reason
     */
    public static MetricsServer start(String bind, int port, MultiCollector... collectors) {
        if (port < 0 || port > 65535) throw new IllegalArgumentException("metrics port " + port + " is not a TCP port (0-65535)");
        try {
            return new MetricsServer(bind, port, collectors);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot serve metrics on " + bind + ":" + port + ": " + e.getMessage(), e);
        }
    }

    public int port() { return server.getPort(); }

    public PrometheusRegistry registry() { return registry; }

    @Override
    public void close() {
        server.close();
    }
}
