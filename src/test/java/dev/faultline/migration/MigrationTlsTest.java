package dev.faultline.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.kvm.HostCapabilities;
import dev.faultline.transport.TlsCredentials;
import dev.faultline.transport.TlsInit;
import dev.faultline.transport.Transport;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A migration over mutual TLS 1.3 (every connection: main and urgent) ends as one over plain TCP does:
 * equal transfer digests and the reference run's final RAM SHA-256; and a destination on TLS refuses
 * a plain source before it reads a frame.
 */
@Timeout(120)
class MigrationTlsTest {
    @TempDir
    static Path tmp;
    private static Transport source, destination;

    @BeforeAll
    static void certificates() throws IOException {
        Path certs = tmp.resolve("certs");
        TlsInit.create(certs, List.of("source", "destination"), 1);
        source = Transport.tls(TlsCredentials.load(certs.resolve("source")), List.of("destination"));
        destination = Transport.tls(TlsCredentials.load(certs.resolve("destination")), List.of("source"));
    }

    /** kvm where it works (both backends' fault paths: userfaultfd handlers), else ref (exit on missing). */
    private static String backend() {
        return HostCapabilities.probe().kvmAvailable() && MigrationDestination.demandPagingUnavailable("kvm") == null ? "kvm" : "ref";
    }

    @Test
    void shouldMigrateOverTlsWithEqualDigestsAndTheReferenceRunsRamHash() throws Exception {
        String b = backend();
        MigrationLoopbackTest.Outcome o = MigrationLoopbackTest.migrate(b, new MigrationDestination.Options(b, 10_000, Duration.ofSeconds(60), true),
                source, destination, MigrationLoopbackTest.workload("phases", 2, b), 2, 0, b.equals("kvm") ? 30 : 10, 8L << 20);
        Map<String, Object> f = o.result().figures();
        Map<String, Object> d = o.destination();
        assertEquals(true, f.get("transfer_verified"), f.toString());
        assertEquals(true, f.get("final_ram_verified"), f.toString());
        assertEquals(f.get("reference_ram_sha256"), d.get("ram_sha256"));
        assertEquals("post-copy", f.get("mode"));
        assertTrue(String.valueOf(f.get("transport")).matches("TLSv1\\.3 TLS_\\S+, destination destination"), String.valueOf(f.get("transport")));
        assertTrue(String.valueOf(d.get("transport")).matches("TLSv1\\.3 TLS_\\S+, source source"), String.valueOf(d.get("transport")));
        // the faults went over the (TLS) urgent connections
        assertTrue(((Number) d.get("pages_demanded")).longValue() > 0, d.toString());
    }

    @Test
    void shouldRefuseAPlainSourceAtATlsDestinationBeforeReadingAFrame() throws Exception {
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0)) {
            MigrationDestination d = new MigrationDestination(new MigrationDestination.Options("ref", 5_000, Duration.ofSeconds(10), true), destination, s -> { });
            CompletableFuture<Map<String, Object>> dest = MigrationLoopbackTest.serveAsync(d, server);
            try (Connection c = Connection.connect("127.0.0.1", server.getLocalPort(), 5_000)) {
                c.send(Protocol.HELLO, b -> Messages.hello(b, new Messages.Hello(9, Protocol.ROLE_MAIN, 0, 4096, 16L << 20, 1, 0x100000, 0, "ref")));
                ProtocolException closed = assertThrows(ProtocolException.class, () -> c.receive("HELLO_ACK"));
                assertTrue(closed.getMessage().contains("answered with a TLS alert and closed the connection: it runs TLS, and this side runs without TLS"),
                        closed.getMessage());
            }
            ExecutionException e = assertThrows(ExecutionException.class, () -> dest.get(30, TimeUnit.SECONDS));
            String msg = e.getCause().getMessage();
            assertTrue(msg.matches("peer 127\\.0\\.0\\.1:\\d+ refused: not TLS: it speaks plain faultline migration .*"), msg);
        }
    }

    @Test
    void shouldTellAPlainDestinationThatATlsSourceCalled() throws Exception {
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0)) {
            MigrationDestination d = new MigrationDestination(new MigrationDestination.Options("ref", 5_000, Duration.ofSeconds(10), true), s -> { });
            CompletableFuture<Map<String, Object>> dest = MigrationLoopbackTest.serveAsync(d, server);
            assertThrows(IOException.class, () -> Connection.connect(source, "127.0.0.1", server.getLocalPort(), 5_000));
            ExecutionException e = assertThrows(ExecutionException.class, () -> dest.get(30, TimeUnit.SECONDS));
            String msg = e.getCause().getMessage();
            assertTrue(msg.contains("a TLS client, and this side runs without TLS (--insecure)"), msg);
        }
    }
}
