package dev.faultline.transport;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** Certificates from {@link TlsInit} and a loopback listener that accepts through a {@link Transport}, for the transport tests. */
final class TlsTestBed implements AutoCloseable {
    final ServerSocketChannel server;
    private final Transport transport;
    private final int timeoutMillis;

    /** A listener on an ephemeral loopback port whose accepted connections go through {@code transport}. */
    TlsTestBed(Transport transport, int timeoutMillis) throws IOException {
        this.server = ServerSocketChannel.open().bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        this.transport = transport;
        this.timeoutMillis = timeoutMillis;
    }

    int port() throws IOException {
        return ((InetSocketAddress) server.getLocalAddress()).getPort();
    }

    /** The next connection, accepted and authenticated on another thread: a link, or the refusal. */
    CompletableFuture<Link> acceptNext() {
        return CompletableFuture.supplyAsync(() -> {
            try {
                SocketChannel c = server.accept();
                return transport.accept(c, timeoutMillis);
            } catch (IOException e) {
                throw new java.util.concurrent.CompletionException(e);
            }
        });
    }

    /** The refusal the accept ended with (fails if it returned a link). */
    static PeerRefusedException refusal(CompletableFuture<Link> accepted) throws InterruptedException, TimeoutException {
        try {
            Link l = accepted.get(20, TimeUnit.SECONDS);
            l.close();
            throw new AssertionError("the peer was accepted as " + l.peerIdentity());
        } catch (ExecutionException e) {
            if (e.getCause() instanceof PeerRefusedException r) return r;
            throw new AssertionError("the accept failed otherwise: " + e.getCause(), e.getCause());
        }
    }

    /** Credentials of {@code name} from a set made by {@link TlsInit} in {@code dir}. */
    static TlsCredentials credentials(Path dir, String name) throws IOException {
        return TlsCredentials.load(dir.resolve(name));
    }

    /** A fresh set of certificates for {@code names} under {@code parent}/{@code set}. */
    static Path init(Path parent, String set, String... names) throws IOException {
        Path dir = parent.resolve(set);
        TlsInit.create(dir, List.of(names), 1);
        return dir;
    }

    /** Sends {@code text} over {@code link} and flushes it, waiting as needed. */
    static void writeAll(Link link, byte[] bytes) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(bytes);
        long end = System.nanoTime() + 10_000_000_000L;
        while (b.hasRemaining() || link.flush() > 0) {
            if (System.nanoTime() > end) throw new IOException("writing took more than 10 s");
            if (b.hasRemaining() && link.write(b) > 0) continue;
            link.awaitWritable(100);
        }
    }

    /** Reads exactly {@code n} bytes from {@code link}, or fails after 10 s. */
    static byte[] readAll(Link link, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        long end = System.nanoTime() + 10_000_000_000L;
        while (b.hasRemaining()) {
            if (System.nanoTime() > end) throw new IOException("reading took more than 10 s (" + b.position() + " of " + n + " bytes)");
            int r = link.read(b);
            if (r < 0) throw new java.io.EOFException("the stream ended after " + b.position() + " of " + n + " bytes");
            if (r == 0) link.awaitReadable(100);
        }
        return b.array();
    }

    @Override
    public void close() throws IOException {
        server.close();
    }
}
