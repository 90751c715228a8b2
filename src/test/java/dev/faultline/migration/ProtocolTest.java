package dev.faultline.migration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.DescriptorTable;
import dev.faultline.vmm.VcpuState;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The wire format over a real loopback connection: round trips, and every kind of bad frame refused with the peer named. */
@Timeout(30)
class ProtocolTest {
    private ServerSocket server;
    private Connection a, b;
    /** a's channel, for bytes that bypass a's framing */
    private SocketChannel rawA;

    @BeforeEach
    void connect() throws IOException {
        server = MigrationDestination.listen("127.0.0.1", 0);
        rawA = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), server.getLocalPort()));
        a = new Connection(rawA.socket(), 2000);
        b = new Connection(server.accept(), 2000);
    }

    /** Writes raw bytes on a connection's (non-blocking) channel. */
    static void writeRaw(SocketChannel ch, byte[] bytes, int len) throws IOException {
        ByteBuffer buf = ByteBuffer.wrap(bytes, 0, len);
        while (buf.hasRemaining()) {
            if (ch.write(buf) == 0) Thread.onSpinWait();
        }
    }

    @AfterEach
    void close() throws IOException {
        a.close();
        b.close();
        server.close();
    }

    @Test
    void shouldRoundTripHelloStateDiscardAndRequest() {
        Messages.Hello h = new Messages.Hello(42, Protocol.ROLE_MAIN, 0, 4096, 64L << 20, 2, 0x100000, 3, "kvm");
        a.send(Protocol.HELLO, buf -> Messages.hello(buf, h));
        assertEquals(h, Messages.hello(b.receive("HELLO"), b.peer()));

        Regs r = new Regs();
        for (int i = 0; i < 16; i++) r.gpr[i] = 0x1111L * (i + 1);
        r.rip = 0x200123;
        r.rflags = 0x246;
        Sregs s = new Sregs(Segment.code64(8), Segment.data(16), Segment.data(16), Segment.data(16), Segment.data(16), Segment.data(16),
                Segment.tss(24, 0x5000, 0x67), Segment.unusableLdt(), new DescriptorTable(0x1000, 0x1f), new DescriptorTable(0x2000, 0xfff),
                0x80050033L, 0x1234, 0x9000, 0x6b0, 0, 0xd01, 0xfee00900L);
        List<VcpuState> states = List.of(new VcpuState(r, s), new VcpuState(new Regs(), s));
        a.send(Protocol.STATE, buf -> Messages.state(buf, states));
        List<VcpuState> got = Messages.state(b.receive("STATE"), b.peer(), 2);
        assertEquals(r, got.get(0).regs());
        assertEquals(s, got.get(0).sregs());
        assertEquals(s, got.get(1).sregs());

        List<Messages.Range> ranges = List.of(new Messages.Range(0x200000, 3), new Messages.Range(0x400000, 1));
        a.send(Protocol.DISCARD, buf -> Messages.discard(buf, ranges, 0, 2));
        assertEquals(ranges, Messages.discard(b.receive("DISCARD"), b.peer(), 64L << 20));

        a.send(Protocol.REQUEST, buf -> Messages.request(buf, new Messages.Request(7, 0x300000, 2)));
        assertEquals(new Messages.Request(7, 0x300000, 2), Messages.request(b.receive("REQUEST"), b.peer(), 64L << 20));
    }

    @Test
    void shouldCarryPagesWithZeroPagesLeftOutAndBytesExact() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ram = arena.allocate(1 << 20, 4096);
            for (long o = 0x3000; o < 0x4000; o += 8) ram.set(ValueLayout.JAVA_LONG, o, o * 31);
            a.send(Protocol.PAGES, buf -> Pages.encode(buf, ram, 0x2000, 3, Protocol.PURPOSE_PUSH, 0));
            Frame f = b.receive("PAGES");
            Messages.PagesHeader h = Messages.pagesHeader(f, b.peer(), 1 << 20);
            assertEquals(0x2000, h.gpa());
            assertEquals(3, h.count());
            assertEquals(0b101, h.zeroMask(), "pages 0 and 2 are zeros and not sent");
            assertEquals(1, h.dataPages());
            ByteBuffer p = f.payload();
            byte[] page = new byte[4096];
            p.get(p.position() + Messages.PagesHeader.BYTES, page);
            assertArrayEquals(ram.asSlice(0x3000, 4096).toArray(ValueLayout.JAVA_BYTE), page);
        }
    }

    @Test
    void shouldRefuseACorruptedMessageNamingThePeerAndTheMessage() throws IOException {
        byte[] frame = frame(Protocol.REQUEST, 1, Protocol.VERSION, new byte[20]);
        frame[Protocol.HEADER_BYTES + 3] ^= 0x10;
        writeRaw(rawA, frame, frame.length);
        ProtocolException e = assertThrows(ProtocolException.class, () -> b.receive("a page request"));
        assertTrue(e.getMessage().contains("peer 127.0.0.1:") && e.getMessage().contains("REQUEST #1") && e.getMessage().contains("corrupted"), e.getMessage());
    }

    @Test
    void shouldRefuseAPeerSpeakingAnotherVersion() throws IOException {
        byte[] frame = frame(Protocol.HELLO, 1, 2, new byte[8]);
        writeRaw(rawA, frame, frame.length);
        ProtocolException e = assertThrows(ProtocolException.class, () -> b.receive("HELLO"));
        assertTrue(e.getMessage().contains("peer 127.0.0.1:") && e.getMessage().contains("protocol version 2")
                && e.getMessage().contains("version " + Protocol.VERSION), e.getMessage());
    }

    @Test
    void shouldRefuseATruncatedMessage() throws IOException {
        byte[] frame = frame(Protocol.PAGES, 1, Protocol.VERSION, new byte[4096]);
        writeRaw(rawA, frame, Protocol.HEADER_BYTES + 100);
        rawA.shutdownOutput();
        ProtocolException e = assertThrows(ProtocolException.class, () -> b.receive("pushed pages"));
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("PAGES #1") && e.getMessage().contains("peer 127.0.0.1:"), e.getMessage());
    }

    @Test
    void shouldGiveUpOnAPeerThatTakesNothingNamingThePeerAndTheMessage() throws IOException {
        a.setTimeout(300);
        byte[] payload = new byte[Messages.PagesHeader.BYTES + 64 * 4096];
        // b never reads: the socket buffers fill, then a's send stalls and times out
        ProtocolException e = assertThrows(ProtocolException.class, () -> {
            for (int i = 0; i < 100_000; i++) a.send(Protocol.PAGES, payload);
        });
        assertTrue(e.getMessage().contains("peer 127.0.0.1:") && e.getMessage().contains("went silent: it took nothing for 300 ms")
                && e.getMessage().contains("PAGES #"), e.getMessage());
    }

    @Test
    void shouldRefuseAMessageOutOfSequence() throws IOException {
        byte[] frame = frame(Protocol.PUSH_DONE, 2, Protocol.VERSION, new byte[8]);
        writeRaw(rawA, frame, frame.length);
        ProtocolException e = assertThrows(ProtocolException.class, () -> b.receive("PUSH_DONE"));
        assertTrue(e.getMessage().contains("where #1 was due"), e.getMessage());
    }

    @Test
    void shouldRefuseAPageOutsideRam() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ram = arena.allocate(1 << 20, 4096);
            a.send(Protocol.PAGES, buf -> Pages.encode(buf, ram, 0xff000, 1, Protocol.PURPOSE_PUSH, 0));
            Frame f = b.receive("PAGES");
            ProtocolException e = assertThrows(ProtocolException.class, () -> Messages.pagesHeader(f, b.peer(), 0x80000));
            assertTrue(e.getMessage().contains("outside guest RAM") && e.getMessage().contains("PAGES #1")
                    && e.getMessage().contains("nothing of it was installed"), e.getMessage());
        }
    }

    /**
     * Every kind of unsound PAGES header is refused alike whether the frame is decoded
     * ({@link Messages#pagesHeader(Frame, String, long)}) or read in place on the fault path
     * ({@link Messages#checkPagesInPlace}); a sound one is accepted by both.
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "{5}")
    @org.junit.jupiter.params.provider.CsvSource(delimiter = '|', value = {
            "0x100000 | 1  | 2 | 0x0                | 1 | ",
            "0x100000 | 64 | 2 | 0xffffffffffffffff | 0 | ",
            "0x100000 | 0  | 2 | 0x0                | 0 | carries 0 pages",
            "0x100000 | 65 | 2 | 0x0                | 0 | carries 65 pages",
            "0x100800 | 1  | 2 | 0x0                | 1 | is not page-aligned",
            "0x7ff000 | 2  | 2 | 0x0                | 2 | lie outside guest RAM",
            "0x100000 | 2  | 2 | 0x4                | 2 | names pages beyond its 2",
            "0x100000 | 1  | 9 | 0x0                | 1 | unknown purpose 9",
            "0x100000 | 2  | 2 | 0x1                | 2 | payload of 8224 bytes, 4128 expected"})
    void shouldRefuseAnUnsoundPagesHeaderAlikeDecodedOrInPlace(String gpaHex, int count, int purpose, String maskHex, int dataPages, String refusal) {
        long gpa = Long.decode(gpaHex), mask = Long.parseUnsignedLong(maskHex.substring(2), 16);
        for (int round = 0; round < 2; round++) {
            a.send(Protocol.PAGES, buf -> {
                Messages.pagesHeader(buf, gpa, count, purpose, 7, mask);
                buf.position(buf.position() + dataPages * Protocol.PAGE);
            });
        }
        long ram = 8L << 20;
        if (refusal == null) {
            assertEquals(gpa, Messages.pagesHeader(b.receive("PAGES"), b.peer(), ram).gpa());
            Messages.checkPagesInPlace(b, b.receiveInPlace("PAGES", 0), ram);
            assertEquals(gpa, Messages.pagesGpa(b.receivedSegment()));
            assertEquals(count, Messages.pagesCount(b.receivedSegment()));
            assertEquals(7, Messages.pagesRequestId(b.receivedSegment()));
            assertEquals(mask, Messages.pagesZeroMask(b.receivedSegment()));
            return;
        }
        Frame f = b.receive("PAGES");
        ProtocolException decoded = assertThrows(ProtocolException.class, () -> Messages.pagesHeader(f, b.peer(), ram));
        int len = b.receiveInPlace("PAGES", 0);
        ProtocolException inPlace = assertThrows(ProtocolException.class, () -> Messages.checkPagesInPlace(b, len, ram));
        assertTrue(decoded.getMessage().contains(refusal), decoded.getMessage());
        assertEquals(decoded.getMessage().replace("#1", "#2"), inPlace.getMessage(), "the same refusal either way");
    }

    @Test
    void shouldReadARequestInPlaceAsDecodedAndRefuseOneOutsideRamAlike() {
        a.send(Protocol.REQUEST, buf -> Messages.request(buf, 9, 0x200000, 3));
        Messages.checkRequestInPlace(b, b.receiveInPlace("REQUEST", 0), 8L << 20);
        assertEquals(9, Messages.requestId(b.receivedSegment()));
        assertEquals(0x200000, Messages.requestGpa(b.receivedSegment()));
        assertEquals(3, Messages.requestCount(b.receivedSegment()));
        a.send(Protocol.REQUEST, buf -> Messages.request(buf, 10, 0x7ff000, 3));
        a.send(Protocol.REQUEST, buf -> Messages.request(buf, 10, 0x7ff000, 3));
        Frame f = b.receive("REQUEST");
        ProtocolException decoded = assertThrows(ProtocolException.class, () -> Messages.request(f, b.peer(), 8L << 20));
        int len = b.receiveInPlace("REQUEST", 0);
        ProtocolException inPlace = assertThrows(ProtocolException.class, () -> Messages.checkRequestInPlace(b, len, 8L << 20));
        assertTrue(decoded.getMessage().contains("not 1..64 whole pages inside guest RAM"), decoded.getMessage());
        assertEquals(decoded.getMessage().replace("#2", "#3"), inPlace.getMessage());
    }

    @Test
    void shouldTimeOutOnASilentPeer() throws IOException {
        b.setTimeout(200);
        long t0 = System.nanoTime();
        ProtocolException e = assertThrows(ProtocolException.class, () -> b.receive("the reply to request 3"));
        assertTrue(e.getMessage().contains("went silent") && e.getMessage().contains("the reply to request 3")
                && e.getMessage().contains("peer 127.0.0.1:"), e.getMessage());
        assertTrue(System.nanoTime() - t0 < 5_000_000_000L);
    }

    /** A frame built by hand (valid CRC), to send things a Connection would not. */
    static byte[] frame(int type, long seq, int version, byte[] payload) {
        ByteBuffer f = ByteBuffer.allocate(Protocol.HEADER_BYTES + payload.length);
        f.putInt(Protocol.MAGIC).put((byte) version).put((byte) type).putShort((short) 0).putLong(seq).putInt(payload.length).putInt(0).put(payload);
        java.util.zip.CRC32C c = new java.util.zip.CRC32C();
        c.update(f.array(), 0, Protocol.CRC_COVERED_HEADER);
        c.update(f.array(), Protocol.HEADER_BYTES, payload.length);
        f.putInt(Protocol.OFF_CRC, (int) c.getValue());
        return f.array();
    }

    /** A thread waiting in receive() when its own side closes the connection gets a ProtocolException, never an NIO internal. */
    @Test
    void shouldEndAReceiveWaitingWhenThisSideClosesWithAProtocolException() throws Exception {
        for (int round = 0; round < 20; round++) {
            ServerSocket srv = MigrationDestination.listen("127.0.0.1", 0);
            Connection x = new Connection(SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), srv.getLocalPort())).socket(), 0);
            Connection y = new Connection(srv.accept(), 0);
            java.util.concurrent.atomic.AtomicReference<Throwable> thrown = new java.util.concurrent.atomic.AtomicReference<>();
            Thread waiter = Thread.ofPlatform().start(() -> {
                try {
                    x.receive("a page request");
                } catch (Throwable t) {
                    thrown.set(t);
                }
            });
            Thread.sleep(round % 4); // close at different points of the wait
            x.close();
            waiter.join(5_000);
            assertFalse(waiter.isAlive(), "the receive ended");
            assertInstanceOf(ProtocolException.class, thrown.get(), String.valueOf(thrown.get()));
            assertTrue(thrown.get().getMessage().contains("closed"), thrown.get().getMessage());
            y.close();
            srv.close();
        }
    }
}
