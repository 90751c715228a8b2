package dev.faultline.transport;

import static dev.faultline.transport.TlsTestBed.credentials;
import static dev.faultline.transport.TlsTestBed.init;
import static dev.faultline.transport.TlsTestBed.readAll;
import static dev.faultline.transport.TlsTestBed.refusal;
import static dev.faultline.transport.TlsTestBed.writeAll;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Mutual TLS 1.3 between a connecting and an accepting {@link Transport} on loopback: a good pair
 * talks; every kind of bad peer is refused by {@link Transport#accept} (or {@link Transport#connect})
 * with one line naming the peer and the reason, before any of its data is read.
 */
@Timeout(60)
class TlsHandshakeTest {
    private static final int TIMEOUT = 5_000;

    @TempDir
    static Path tmp;
    private static Path good, other;

    @BeforeAll
    static void certificates() throws IOException {
        good = init(tmp, "good", "source", "destination", "mallory");
        other = init(tmp, "other", "source", "destination");
    }

    private static Transport destination(Path set, String... allow) throws IOException {
        return Transport.tls(credentials(set, "destination"), List.of(allow));
    }

    private static Transport source(Path set, String name, String... allow) throws IOException {
        return Transport.tls(credentials(set, name), List.of(allow));
    }

    @Test
    void shouldConnectAGoodPairAndCarryBytesBothWaysNamingEachOther() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            try (Link src = source(good, "source", "destination").connect("127.0.0.1", bed.port(), TIMEOUT);
                 Link dst = accepted.get(20, TimeUnit.SECONDS)) {
                assertEquals("destination", src.peerIdentity());
                assertEquals("source", dst.peerIdentity());
                assertTrue(src.secure() && dst.secure());
                assertTrue(src.protocol().startsWith("TLSv1.3 TLS_"), src.protocol());
                // 1 MiB one way (many records, partial writes), an answer the other way
                byte[] big = new byte[1 << 20];
                new Random(7).nextBytes(big);
                CompletableFuture<byte[]> got = CompletableFuture.supplyAsync(() -> {
                    try {
                        return readAll(dst, big.length);
                    } catch (IOException e) {
                        throw new java.util.concurrent.CompletionException(e);
                    }
                });
                writeAll(src, big);
                assertArrayEquals(big, got.get(20, TimeUnit.SECONDS));
                writeAll(dst, "ok".getBytes(StandardCharsets.US_ASCII));
                assertEquals("ok", new String(readAll(src, 2), StandardCharsets.US_ASCII));
            }
        }
    }

    @Test
    void shouldRefuseACertificateFromAnotherCaOnEitherSide() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            Transport stranger = source(other, "source", "destination");
            // the source checks the destination first: its certificate is from another CA too
            PeerRefusedException atSource = assertThrows(PeerRefusedException.class, () -> stranger.connect("127.0.0.1", bed.port(), TIMEOUT));
            assertEquals("peer 127.0.0.1:" + bed.port() + " refused: certificate 'destination' not signed by the CA in "
                    + other.resolve("source").resolve("ca.pem"), atSource.getMessage());
            PeerRefusedException atDestination = refusal(accepted);
            assertTrue(atDestination.getMessage().startsWith("peer 127.0.0.1:"), atDestination.getMessage());
            assertTrue(atDestination.reason().contains("refused this side's certificate"), atDestination.getMessage());
        }
        // the destination checks the source's: a client that trusts the destination but presents a certificate of another CA
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            tryHandshake(clientContext(good.resolve("destination"), other.resolve("source")), bed.port());
            PeerRefusedException r = refusal(accepted);
            assertEquals("certificate 'source' not signed by the CA in " + good.resolve("destination").resolve("ca.pem"), r.reason());
        }
    }

    @Test
    void shouldRefuseAnExpiredCertificate() throws Exception {
        Path soon = tmp.resolve("soon");
        Instant now = Instant.now();
        TlsInit.create(soon, List.of("source", "destination"), now.minus(Duration.ofMinutes(1)), now.plus(Duration.ofSeconds(3)));
        Transport expiring = source(soon, "source", "destination");
        Transport dest = destination(soon, "source");
        Thread.sleep(Duration.between(Instant.now(), now.plus(Duration.ofMillis(3500))).toMillis());
        try (TlsTestBed bed = new TlsTestBed(dest, TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            PeerRefusedException atSource = assertThrows(PeerRefusedException.class, () -> expiring.connect("127.0.0.1", bed.port(), TIMEOUT));
            assertTrue(atSource.reason().startsWith("certificate 'destination' expired on "), atSource.getMessage());
            refusal(accepted);
        }
        // and a certificate that expired is refused when it is loaded
        CredentialsException e = assertThrows(CredentialsException.class, () -> TlsCredentials.load(soon.resolve("source")));
        assertTrue(e.getMessage().contains("cert.pem expired on"), e.getMessage());
    }

    @Test
    void shouldRefuseAClientWithoutACertificate() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            tryHandshake(clientContext(good.resolve("destination"), null), bed.port());
            assertEquals("no certificate", refusal(accepted).reason());
        }
    }

    @Test
    void shouldRefuseAnIdentityNotOnTheDestinationsAllowList() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            // TLS 1.3: the client's side of the handshake ends before the server has checked it; it learns at its first read
            try (Link mallory = source(good, "mallory", "destination").connect("127.0.0.1", bed.port(), TIMEOUT)) {
                PeerRefusedException r = refusal(accepted);
                assertEquals("identity 'mallory' is not in --tls-allow (source)", r.reason());
                IOException e = assertThrows(IOException.class, () -> readAll(mallory, 1));
                assertTrue(e.getMessage().contains("certificate"), e.getMessage());
            }
        }
    }

    @Test
    void shouldRefuseADestinationNotOnTheSourcesAllowList() throws Exception {
        Transport malloryListens = Transport.tls(credentials(good, "mallory"), List.of("source"));
        try (TlsTestBed bed = new TlsTestBed(malloryListens, TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            PeerRefusedException e = assertThrows(PeerRefusedException.class,
                    () -> source(good, "source", "destination").connect("127.0.0.1", bed.port(), TIMEOUT));
            assertEquals("identity 'mallory' is not in --tls-allow (destination)", e.reason());
            assertTrue(refusal(accepted).reason().contains("it refused this side's certificate (TLS alert"));
        }
    }

    @Test
    void shouldRefuseAPlainTcpClientAndGarbageAsNotTls() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            try (Link plain = Transport.insecure().connect("127.0.0.1", bed.port(), TIMEOUT)) {
                byte[] hello = new byte[24];
                ByteBuffer.wrap(hello).putInt(0x464C4D47).put((byte) 1).put((byte) 1);
                writeAll(plain, hello);
                assertEquals("not TLS: it speaks plain faultline migration (it runs with --insecure; this side needs TLS)", refusal(accepted).reason());
            }
            accepted = bed.acceptNext();
            try (SocketChannel raw = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), bed.port()))) {
                raw.write(ByteBuffer.wrap("GET / HTTP/1.0\r\n\r\n".getBytes(StandardCharsets.US_ASCII)));
                assertEquals("not TLS (its first byte is 0x47, a TLS handshake starts with 0x16)", refusal(accepted).reason());
            }
            // garbage that starts like a TLS record
            accepted = bed.acceptNext();
            try (SocketChannel raw = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), bed.port()))) {
                byte[] junk = new byte[600];
                new Random(3).nextBytes(junk);
                junk[0] = 0x16;
                junk[1] = 0x03;
                junk[2] = 0x01;
                junk[3] = 0x02;
                junk[4] = 0x00;
                raw.write(ByteBuffer.wrap(junk));
                String reason = refusal(accepted).reason();
                assertTrue(reason.startsWith("TLS handshake failed: "), reason);
            }
        }
    }

    @Test
    void shouldDropAClientThatStallsMidHandshakeWithinTheDeadline() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), 500)) {
            for (int bytes : new int[] {0, 3}) {
                CompletableFuture<Link> accepted = bed.acceptNext();
                try (SocketChannel raw = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), bed.port()))) {
                    raw.write(ByteBuffer.wrap(new byte[] {0x16, 0x03, 0x01}, 0, bytes)); // a record header begun, never finished
                    long t0 = System.nanoTime();
                    PeerRefusedException r = refusal(accepted);
                    long ms = (System.nanoTime() - t0) / 1_000_000;
                    assertEquals("handshake timed out after 500 ms", r.reason());
                    assertTrue(ms < 3_000, "dropped after " + ms + " ms");
                    // and the refused connection is closed: the stalled client reads (at most an alert, then) the end of the stream
                    raw.configureBlocking(true);
                    raw.socket().setSoTimeout(5_000);
                    InputStream in = raw.socket().getInputStream();
                    int read = 0;
                    while (in.read() >= 0) assertTrue(++read < 100, "more than an alert after the refusal");
                }
            }
        }
    }

    @Test
    void shouldFailATlsClientAtAPlainListenerDuringTheHandshake() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(Transport.insecure(), TIMEOUT)) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            CompletableFuture<Void> plainSide = accepted.thenAccept(l -> {
                try {
                    readAll(l, 24); // what a plain destination reads first: a frame header
                } catch (IOException ignored) {
                    // the client gives up
                } finally {
                    l.close();
                }
            });
            PeerRefusedException e = assertThrows(PeerRefusedException.class,
                    () -> source(good, "source", "destination").connect("127.0.0.1", bed.port(), TIMEOUT));
            // the plain listener reads a frame header, finds no magic and closes: an end or a reset, mid-handshake
            assertTrue(e.reason().contains("during the TLS handshake"), e.getMessage());
            plainSide.get(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void shouldEndTheStreamWhenABitOfARecordIsChangedOnTheWay() throws Exception {
        try (TlsTestBed bed = new TlsTestBed(destination(good, "source"), TIMEOUT);
             java.nio.channels.ServerSocketChannel relay = java.nio.channels.ServerSocketChannel.open()
                     .bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))) {
            CompletableFuture<Link> accepted = bed.acceptNext();
            // a relay that flips one bit at byte 100,000 of what the client sends (well past the handshake)
            Thread.ofPlatform().daemon().start(() -> {
                try (SocketChannel in = relay.accept(); SocketChannel out = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), bed.port()))) {
                    Thread back = Thread.ofPlatform().daemon().start(() -> pump(out, in, -1));
                    pump(in, out, 100_000);
                    back.join(10_000);
                } catch (IOException | InterruptedException ignored) {
                    // the test is over
                }
            });
            int relayPort = ((InetSocketAddress) relay.getLocalAddress()).getPort();
            try (Link src = source(good, "source", "destination").connect("127.0.0.1", relayPort, TIMEOUT);
                 Link dst = accepted.get(20, TimeUnit.SECONDS)) {
                CompletableFuture<Void> sent = CompletableFuture.runAsync(() -> {
                    try {
                        writeAll(src, new byte[1 << 20]);
                    } catch (IOException stopped) {
                        // the receiver gave up
                    }
                });
                IOException e = assertThrows(IOException.class, () -> readAll(dst, 1 << 20));
                assertTrue(e.getMessage().startsWith("TLS: ") && e.getMessage().toLowerCase().contains("tag mismatch"), e.getMessage());
                dst.close();
                sent.get(20, TimeUnit.SECONDS);
            }
        }
    }

    /** Copies {@code from} to {@code to} until either ends, flipping the lowest bit of byte {@code flipAt} (-1: none). */
    private static void pump(SocketChannel from, SocketChannel to, long flipAt) {
        ByteBuffer b = ByteBuffer.allocate(8192);
        long seen = 0;
        try {
            while (from.read(b.clear()) >= 0) {
                b.flip();
                if (flipAt >= seen && flipAt < seen + b.limit()) {
                    int i = (int) (flipAt - seen);
                    b.put(i, (byte) (b.get(i) ^ 1));
                }
                seen += b.limit();
                while (b.hasRemaining()) to.write(b);
            }
        } catch (IOException ended) {
            // one side closed
        }
    }

    @Test
    void shouldRefuseAnEmptyAllowList() throws Exception {
        TlsCredentials c = credentials(good, "destination");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Transport.tls(c, Set.of()));
        assertTrue(e.getMessage().contains("--tls-allow names nobody"), e.getMessage());
    }

    /**
     * A client SSLContext of the JDK's own making (not our transport's): trusting the CA in
     * {@code trusting}/ca.pem, presenting the certificate in {@code as} (null: none).
     */
    private static SSLContext clientContext(Path trusting, Path as) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = java.nio.file.Files.newInputStream(trusting.resolve("ca.pem"))) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(trust);
        javax.net.ssl.KeyManager[] km = null;
        if (as != null) {
            TlsCredentials c = TlsCredentials.load(as);
            km = new javax.net.ssl.KeyManager[] {new OwnKey(c.chain(), c.key())};
        }
        SSLContext ctx = SSLContext.getInstance("TLSv1.3");
        ctx.init(km, tmf.getTrustManagers(), null);
        return ctx;
    }

    /** A blocking TLS client's handshake and one write; whatever happens to it (the server refuses it) is ignored. */
    private static void tryHandshake(SSLContext ctx, int port) {
        try (Socket s = new Socket(InetAddress.getLoopbackAddress(), port);
             SSLSocket t = (SSLSocket) ctx.getSocketFactory().createSocket(s, "127.0.0.1", port, true)) {
            t.setSoTimeout(5_000);
            t.setEnabledProtocols(new String[] {"TLSv1.3"});
            t.startHandshake();
            OutputStream o = t.getOutputStream();
            o.write(1);
            o.flush();
            t.getInputStream().read();
        } catch (IOException refused) {
            // expected: the server refuses this client
        }
    }
}
