package dev.faultline.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import dev.faultline.transport.EngineAllocation;
import dev.faultline.transport.TlsCredentials;
import dev.faultline.transport.TlsInit;
import dev.faultline.transport.Transport;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A remote fault's round trip makes nothing on the faulting thread ({@link RemotePageSource#fill})
 * nor on a thread that answers in place as the source does ({@link Connection#receiveInPlace},
 * {@link Messages#checkRequestInPlace}, {@link Pages#encode} through {@link Connection#sendSegment}),
 * once compiled; and what arrives is the source's pages.
 */
@Timeout(120)
class RemoteFaultAllocationTest {
    static final long RAM = 16L << 20;
    static final int ROUND = 10_000;

    @TempDir
    static Path tmp;

    @Test
    void shouldServeARemoteFaultWithoutMakingAnythingOnEitherSide() throws Exception {
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0);
             SocketChannel raw = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), server.getLocalPort()))) {
            Rounds r = measure(new Connection(raw.socket(), 10_000), new Connection(server.accept(), 10_000), 8, 8);
            assertTrue(r.quiet(), "bytes made per remote fault, fetching/answering thread, per round of " + ROUND + ": " + r.text());
        }
    }

    /**
     * Over TLS the JDK's engine makes objects per record (a result, and a fresh AES-GCM state for each
     * record's nonce: Cipher.init per record), about 1.5 KiB per record here; a fault is one record
     * each way. The fault path adds nothing to that.
     */
    @Test
    void shouldServeARemoteFaultOverTlsMakingOnlyWhatTheTlsEngineMakesPerRecord() throws Exception {
        Path certs = tmp.resolve("certs");
        TlsInit.create(certs, List.of("source", "destination"), 1);
        Transport src = Transport.tls(TlsCredentials.load(certs.resolve("source")), List.of("destination"));
        Transport dst = Transport.tls(TlsCredentials.load(certs.resolve("destination")), List.of("source"));
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0)) {
            CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> {
                try {
                    return new Connection(dst.accept(server.accept().getChannel(), 10_000), 10_000);
                } catch (IOException e) {
                    throw new java.util.concurrent.CompletionException(e);
                }
            });
            Connection source = Connection.connect(src, "127.0.0.1", server.getLocalPort(), 10_000);
            // the floor: what the JDK's engine makes per record of these sizes (a REQUEST frame; a reply of two data pages)
            EngineAllocation.PerRecord request = EngineAllocation.measure(src, dst, Protocol.HEADER_BYTES + 20, ROUND);
            EngineAllocation.PerRecord reply = EngineAllocation.measure(dst, src, Protocol.HEADER_BYTES + Messages.PagesHeader.BYTES + 2 * 4096, ROUND);
            double fetchFloor = request.wrap() + reply.unwrap(), answerFloor = request.unwrap() + reply.wrap();
            // nothing of ours on top of the engine (a few percent for the rounds' noise), in some round after the first
            Rounds r = measure(source, accepted.get(20, TimeUnit.SECONDS), fetchFloor * 1.05 + 32, answerFloor * 1.05 + 32);
            String what = String.format("bytes per remote fault over TLS, fetching/answering thread, per round of %d: %s; the engine alone: %.0f/%.0f",
                    ROUND, r.text(), fetchFloor, answerFloor);
            System.out.println(what);
            assertTrue(r.quiet(), what);
        }
    }

    /**
     * @param text  bytes made per fault in each round, "fetching/answering"
     * @param quiet whether the last round made fewer than the bound on both threads
     * @param fetch bytes per fault of the last round on the fetching thread
     * @param answer the same on the answering thread
     */
    record Rounds(List<String> text, boolean quiet, double fetch, double answer) {}

    /**
     * Serves remote faults from {@code source} to {@code destination} in rounds of {@link #ROUND} until a
     * round after the first makes fewer than {@code fetchBound} bytes per fault on the fetching thread and
     * {@code answerBound} on the answering one (at most 12 rounds); checks the pages and the CRCs logged.
     */
    private static Rounds measure(Connection source, Connection destination, double fetchBound, double answerBound) throws Exception {
        MemorySegment ram = Arena.ofAuto().allocate(RAM, 4096);
        for (long o = 0; o < RAM; o += 8192) ram.set(ValueLayout.JAVA_LONG, o + 16, o * 31 + 7); // every other page zero
        var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        {
            AtomicLong answered = new AtomicLong();
            Thread responder = Thread.ofPlatform().daemon().name("responder").start(() -> answer(source, ram, answered));
            long[] crcs = new long[(int) (RAM / 4096)];
            RemotePageSource rps = new RemotePageSource(List.of(destination), RAM,
                    (gpa, payload, off, zero) -> crcs[(int) (gpa / 4096)] = zero ? Pages.zeroPageCrc() : Pages.crc(payload, off),
                    new LatencySamples(System.nanoTime(), 1 << 20), 0);
            MemorySegment dst = Arena.ofAuto().allocate(RAM, 4096);
            long pages = RAM / 4096 - 256;
            List<String> rounds = new ArrayList<>();
            boolean quiet = false;
            double fetch = 0, answer = 0;
            for (int round = 0; round < 12 && !quiet; round++) {
                long fetch0 = mx.getCurrentThreadAllocatedBytes(), answer0 = mx.getThreadAllocatedBytes(responder.threadId());
                for (int i = 0; i < ROUND; i++) {
                    long gpa = (1 << 20) + ((round * (long) ROUND + i) * 2 % pages) * 4096;
                    rps.fill(gpa, dst, gpa, 2 * 4096);
                }
                fetch = (mx.getCurrentThreadAllocatedBytes() - fetch0) / (double) ROUND;
                answer = (mx.getThreadAllocatedBytes(responder.threadId()) - answer0) / (double) ROUND;
                rounds.add(String.format("%.1f/%.1f", fetch, answer));
                quiet = round > 0 && fetch < fetchBound && answer < answerBound;
            }
            long end = (1 << 20) + pages * 4096;
            assertEquals(-1, MemorySegment.mismatch(ram, 1 << 20, end, dst, 1 << 20, end), "every fetched page equals the source's");
            for (long gpa = 1 << 20; gpa < (1 << 20) + 64 * 4096; gpa += 4096) {
                int expected = Pages.crc(ram, gpa, new java.util.zip.CRC32C());
                assertEquals(expected, (int) crcs[(int) (gpa / 4096)], "the CRC logged for page 0x" + Long.toHexString(gpa));
            }
            assertTrue(answered.get() >= 2L * ROUND);
            destination.close();
            source.close();
            return new Rounds(rounds, quiet, fetch, answer);
        }
    }

    /** Answers requests as the migration source does, in place. */
    private static void answer(Connection c, MemorySegment ram, AtomicLong answered) {
        MemorySegment out = c.sendSegment();
        long[] fields = new long[3];
        java.util.function.Consumer<java.nio.ByteBuffer> reply = b -> Pages.encode(b, out, ram, fields[1], (int) fields[2], Protocol.PURPOSE_REPLY,
                fields[0], 0);
        try {
            while (true) {
                int len = c.receiveInPlace("a request", 0);
                Messages.checkRequestInPlace(c, len, RAM);
                MemorySegment in = c.receivedSegment();
                fields[0] = Messages.requestId(in);
                fields[1] = Messages.requestGpa(in);
                fields[2] = Messages.requestCount(in);
                c.send(Protocol.PAGES, reply);
                answered.incrementAndGet();
            }
        } catch (RuntimeException closed) {
            // the test closed the connection
        }
    }
}
