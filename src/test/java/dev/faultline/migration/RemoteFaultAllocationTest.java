package dev.faultline.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

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

    @Test
    void shouldServeARemoteFaultWithoutMakingAnythingOnEitherSide() throws Exception {
        MemorySegment ram = Arena.ofAuto().allocate(RAM, 4096);
        for (long o = 0; o < RAM; o += 8192) ram.set(ValueLayout.JAVA_LONG, o + 16, o * 31 + 7); // every other page zero
        var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0);
             SocketChannel raw = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), server.getLocalPort()))) {
            Connection source = new Connection(raw.socket(), 10_000);
            Connection destination = new Connection(server.accept(), 10_000);
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
            for (int round = 0; round < 12 && !quiet; round++) {
                long fetch0 = mx.getCurrentThreadAllocatedBytes(), answer0 = mx.getThreadAllocatedBytes(responder.threadId());
                for (int i = 0; i < ROUND; i++) {
                    long gpa = (1 << 20) + ((round * (long) ROUND + i) * 2 % pages) * 4096;
                    rps.fill(gpa, dst, gpa, 2 * 4096);
                }
                double fetch = (mx.getCurrentThreadAllocatedBytes() - fetch0) / (double) ROUND;
                double answer = (mx.getThreadAllocatedBytes(responder.threadId()) - answer0) / (double) ROUND;
                rounds.add(String.format("%.1f/%.1f", fetch, answer));
                quiet = round > 0 && fetch < 8 && answer < 8;
            }
            assertTrue(quiet, "bytes made per remote fault, fetching/answering thread, per round of " + ROUND + ": " + rounds);
            long end = (1 << 20) + pages * 4096;
            assertEquals(-1, MemorySegment.mismatch(ram, 1 << 20, end, dst, 1 << 20, end), "every fetched page equals the source's");
            for (long gpa = 1 << 20; gpa < (1 << 20) + 64 * 4096; gpa += 4096) {
                int expected = Pages.crc(ram, gpa, new java.util.zip.CRC32C());
                assertEquals(expected, (int) crcs[(int) (gpa / 4096)], "the CRC logged for page 0x" + Long.toHexString(gpa));
            }
            assertTrue(answered.get() >= 2L * ROUND);
            destination.close();
            source.close();
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
