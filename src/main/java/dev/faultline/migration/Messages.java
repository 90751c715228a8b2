package dev.faultline.migration;

import dev.faultline.hv.DescriptorTable;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.vmm.VcpuState;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Payload layouts of the {@link Protocol} messages (big-endian), one encoder and one decoder each.
 * A decoder refuses a payload that is too short or too long for its type with a {@link ProtocolException}
 * naming the peer and the frame.
 *
 * <pre>
 * HELLO       u64 session | u8 role | u8 0 | u16 lane | u32 page size | u64 RAM bytes | u32 vCPUs
 *             | u64 paged base | u32 pre-copy rounds | str backend          (role urgent: the RAM fields are 0)
 * HELLO_ACK   u64 session | u8 demand paging | u8 0 | u16 urgent connections | str backend | str detail
 * PAGES       u64 gpa | u32 count (1..64) | u8 purpose | u8[3] 0 | u64 request id (0: none)
 *             | u64 zero mask (bit i: page i is zeros, not sent) | the non-zero pages, 4096 bytes each
 * DISCARD     u32 n | n x (u64 gpa | u32 pages): pages sent before the switch-over and written since
 * STATE       u32 vCPUs | per vCPU: 18 x u64 (16 GPRs in x86 order, rip, rflags) | sregs (see below)
 * RESUMED     u64 ns from STATE received to the first vCPU entering the guest
 * REQUEST     u64 request id (0: warm-up, answered with zero pages whatever RAM holds) | u64 gpa | u32 count
 * PUSH_DONE   u64 pages pushed
 * TRANSFERRED u64 pages demanded | u64 pages pushed and installed | u8[32] transfer digest
 * READY       u64 warm-up requests made (the destination's machine is built and its fault path warm)
 * RESULT, VERDICT, ERROR: str (RESULT and VERDICT carry JSON)
 * str         u32 length | UTF-8 bytes
 * sregs       8 segments (cs ds es fs gs ss tr ldt: u64 base | u32 limit | u16 selector | u8 type | u8 dpl
 *             | u8 flags: present 1, db 2, s 4, l 8, g 16, avl 32, unusable 64) | gdt, idt (u64 base | u32 limit)
 *             | cr0 cr2 cr3 cr4 cr8 efer apic base (u64 each)
 * </pre>
 */
public final class Messages {
    private Messages() {}

    public record Hello(long session, int role, int lane, int pageSize, long ramSize, int vcpus, long pagedBase,
                        int precopyRounds, String backend) {}

    public record HelloAck(long session, boolean demandPaging, int urgentConnections, String backend, String detail) {}

    /** The fixed part of a PAGES payload; the page data follows it. */
    public record PagesHeader(long gpa, int count, int purpose, long requestId, long zeroMask) {
        public static final int BYTES = 32;

        public int dataPages() { return count - Long.bitCount(zeroMask); }
        public boolean isZero(int i) { return (zeroMask & (1L << i)) != 0; }
    }

    public record Range(long gpa, int pages) {}

    public record Request(long id, long gpa, int count) {}

    public record Transferred(long demanded, long pushed, byte[] digest) {}

    // ---------------------------------------------------------------- HELLO

    public static void hello(ByteBuffer b, Hello h) {
        b.putLong(h.session()).put((byte) h.role()).put((byte) 0).putShort((short) h.lane()).putInt(h.pageSize())
                .putLong(h.ramSize()).putInt(h.vcpus()).putLong(h.pagedBase()).putInt(h.precopyRounds());
        str(b, h.backend());
    }

    public static Hello hello(Frame f, String peer) {
        return decode(f, peer, Protocol.HELLO, b -> {
            long session = b.getLong();
            int role = b.get() & 0xff;
            b.get();
            int lane = b.getShort() & 0xffff;
            return new Hello(session, role, lane, b.getInt(), b.getLong(), b.getInt(), b.getLong(), b.getInt(), str(b));
        });
    }

    public static void helloAck(ByteBuffer b, HelloAck a) {
        b.putLong(a.session()).put((byte) (a.demandPaging() ? 1 : 0)).put((byte) 0).putShort((short) a.urgentConnections());
        str(b, a.backend());
        str(b, a.detail());
    }

    public static HelloAck helloAck(Frame f, String peer) {
        return decode(f, peer, Protocol.HELLO_ACK, b -> {
            long session = b.getLong();
            boolean dp = b.get() != 0;
            b.get();
            int urgent = b.getShort() & 0xffff;
            return new HelloAck(session, dp, urgent, str(b), str(b));
        });
    }

    // ---------------------------------------------------------------- PAGES

    public static void pagesHeader(ByteBuffer b, PagesHeader p) {
        pagesHeader(b, p.gpa(), p.count(), p.purpose(), p.requestId(), p.zeroMask());
    }

    public static void pagesHeader(ByteBuffer b, long gpa, int count, int purpose, long requestId, long zeroMask) {
        b.putLong(gpa).putInt(count).put((byte) purpose).put((byte) 0).putShort((short) 0).putLong(requestId).putLong(zeroMask);
    }

    /**
     * Decodes and checks a PAGES header against RAM: page-aligned, 1..64 pages, inside [0, ramSize),
     * a zero mask within the count, a payload of exactly the non-zero pages.
     */
    public static PagesHeader pagesHeader(Frame f, String peer, long ramSize) {
        PagesHeader p = decodePrefix(f, peer, Protocol.PAGES, PagesHeader.BYTES, b -> {
            long gpa = b.getLong();
            int count = b.getInt();
            int purpose = b.get() & 0xff;
            b.get();
            b.getShort();
            return new PagesHeader(gpa, count, purpose, b.getLong(), b.getLong());
        });
        if (!checkedPages(p.gpa(), p.count(), p.purpose(), p.zeroMask(), f.payload().remaining(), ramSize)) {
            checkPages(peer, f.type(), f.seq(), p.gpa(), p.count(), p.purpose(), p.zeroMask(), f.payload().remaining(), ramSize);
        }
        return p;
    }

    /** Big-endian fields of a payload read in place (the wire is big-endian, as ByteBuffer writes it). */
    private static final ValueLayout.OfLong BE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /**
     * The PAGES header of the frame {@code c} last received in place ({@link Connection#receiveInPlace},
     * payload of {@code payloadBytes}), checked as {@link #pagesHeader(Frame, String, long)} checks it;
     * read its fields with {@link #pagesGpa} and the others. Makes nothing unless it fails.
     */
    public static void checkPagesInPlace(Connection c, int payloadBytes, long ramSize) {
        if (c.lastType() != Protocol.PAGES || payloadBytes < PagesHeader.BYTES) {
            Frame f = new Frame(c.lastType(), c.lastSeq(), ByteBuffer.allocate(payloadBytes)); // for the message only
            expectType(f, c.peer(), Protocol.PAGES);
            throw new ProtocolException(c.peer() + ": message " + f.describe() + " is too short (" + payloadBytes + " bytes) for its "
                    + PagesHeader.BYTES + "-byte header");
        }
        MemorySegment in = c.receivedSegment();
        if (checkedPages(pagesGpa(in), pagesCount(in), pagesPurpose(in), pagesZeroMask(in), payloadBytes, ramSize)) return;
        checkPages(c.peer(), c.lastType(), c.lastSeq(), pagesGpa(in), pagesCount(in), pagesPurpose(in), pagesZeroMask(in), payloadBytes, ramSize);
    }

    /** Fields of the PAGES header in a connection's {@link Connection#receivedSegment()}. */
    public static long pagesGpa(MemorySegment in) { return in.get(BE_LONG, Protocol.HEADER_BYTES); }
    public static int pagesCount(MemorySegment in) { return in.get(BE_INT, Protocol.HEADER_BYTES + 8); }
    public static int pagesPurpose(MemorySegment in) { return in.get(ValueLayout.JAVA_BYTE, Protocol.HEADER_BYTES + 12) & 0xff; }
    public static long pagesRequestId(MemorySegment in) { return in.get(BE_LONG, Protocol.HEADER_BYTES + 16); }
    public static long pagesZeroMask(MemorySegment in) { return in.get(BE_LONG, Protocol.HEADER_BYTES + 24); }

    /** Whether a PAGES header is sound (what {@link #checkPages} refuses, without wording it). */
    private static boolean checkedPages(long gpa, int count, int purpose, long zeroMask, long payloadBytes, long ramSize) {
        long end = gpa + (long) count * Protocol.PAGE;
        return count >= 1 && count <= Protocol.MAX_PAGES_PER_MESSAGE && (gpa & (Protocol.PAGE - 1)) == 0 && gpa >= 0 && end <= ramSize
                && end >= gpa && (count == 64 || (zeroMask >>> count) == 0) && purpose <= Protocol.PURPOSE_REPLY
                && payloadBytes == PagesHeader.BYTES + (long) (count - Long.bitCount(zeroMask)) * Protocol.PAGE;
    }

    /** Refuses an unsound PAGES header, naming the peer, the message and what is wrong (called once {@link #checkedPages} said no). */
    private static void checkPages(String peer, int type, long seq, long gpa, int count, int purpose, long zeroMask, long payloadBytes, long ramSize) {
        String what = peer + ": message " + Protocol.typeName(type) + " #" + seq;
        if (count < 1 || count > Protocol.MAX_PAGES_PER_MESSAGE) {
            throw new ProtocolException(what + " carries " + count + " pages; 1 to " + Protocol.MAX_PAGES_PER_MESSAGE + " are allowed");
        }
        if ((gpa & (Protocol.PAGE - 1)) != 0) {
            throw new ProtocolException(String.format("%s: page address 0x%x is not page-aligned; nothing of it was installed", what, gpa));
        }
        long end = gpa + (long) count * Protocol.PAGE;
        if (gpa < 0 || end > ramSize || end < gpa) {
            throw new ProtocolException(String.format("%s: pages [0x%x, 0x%x) lie outside guest RAM [0, 0x%x); nothing of it was installed",
                    what, gpa, end, ramSize));
        }
        if (count < 64 && (zeroMask >>> count) != 0) {
            throw new ProtocolException(what + ": zero mask 0x" + Long.toHexString(zeroMask) + " names pages beyond its " + count);
        }
        if (purpose > Protocol.PURPOSE_REPLY) throw new ProtocolException(what + ": unknown purpose " + purpose);
        int dataPages = count - Long.bitCount(zeroMask);
        long want = PagesHeader.BYTES + (long) dataPages * Protocol.PAGE;
        if (payloadBytes != want) {
            throw new ProtocolException(what + ": payload of " + payloadBytes + " bytes, " + want + " expected for "
                    + dataPages + " non-zero pages; nothing of it was installed");
        }
        throw new IllegalStateException("checkedPages refused what checkPages accepts: " + what); // the two must agree
    }

    // ---------------------------------------------------------------- DISCARD, REQUEST, small ones

    public static void discard(ByteBuffer b, List<Range> ranges, int from, int n) {
        b.putInt(n);
        for (int i = from; i < from + n; i++) b.putLong(ranges.get(i).gpa()).putInt(ranges.get(i).pages());
    }

    public static List<Range> discard(Frame f, String peer, long ramSize) {
        List<Range> r = decode(f, peer, Protocol.DISCARD, b -> {
            int n = b.getInt();
            if (n < 0 || n > b.remaining() / 12) throw new BufferUnderflowException();
            List<Range> l = new ArrayList<>(n);
            for (int i = 0; i < n; i++) l.add(new Range(b.getLong(), b.getInt()));
            return l;
        });
        for (Range x : r) {
            long end = x.gpa() + (long) x.pages() * Protocol.PAGE;
            if ((x.gpa() & (Protocol.PAGE - 1)) != 0 || x.pages() < 1 || x.gpa() < 0 || end > ramSize) {
                throw new ProtocolException(String.format("%s: message %s discards [0x%x, +%d pages), not whole pages inside guest RAM [0, 0x%x)",
                        peer, f.describe(), x.gpa(), x.pages(), ramSize));
            }
        }
        return r;
    }

    public static void request(ByteBuffer b, Request r) {
        request(b, r.id(), r.gpa(), r.count());
    }

    public static void request(ByteBuffer b, long id, long gpa, int count) {
        b.putLong(id).putLong(gpa).putInt(count);
    }

    public static Request request(Frame f, String peer, long ramSize) {
        Request r = decode(f, peer, Protocol.REQUEST, b -> new Request(b.getLong(), b.getLong(), b.getInt()));
        if (!soundRequest(r.gpa(), r.count(), ramSize)) refuseRequest(peer, f.describe(), r.id(), r.gpa(), r.count(), ramSize);
        return r;
    }

    /** Bytes of a REQUEST payload: id, first page's address, page count. */
    static final int REQUEST_BYTES = 20;

    /**
     * The REQUEST that {@code c} last received in place ({@link Connection#receiveInPlace}, payload of
     * {@code payloadBytes}), checked as {@link #request(Frame, String, long)} checks it; read it with
     * {@link #requestId} and the others. Makes nothing unless it fails.
     */
    public static void checkRequestInPlace(Connection c, int payloadBytes, long ramSize) {
        if (c.lastType() != Protocol.REQUEST || payloadBytes != REQUEST_BYTES) {
            request(c.lastFrame(), c.peer(), ramSize); // words what is wrong
            throw new IllegalStateException("a REQUEST of " + payloadBytes + " bytes was taken");
        }
        MemorySegment in = c.receivedSegment();
        if (!soundRequest(requestGpa(in), requestCount(in), ramSize)) {
            refuseRequest(c.peer(), Protocol.typeName(c.lastType()) + " #" + c.lastSeq(), requestId(in), requestGpa(in), requestCount(in), ramSize);
        }
    }

    /** Fields of the REQUEST in a connection's {@link Connection#receivedSegment()}. */
    public static long requestId(MemorySegment in) { return in.get(BE_LONG, Protocol.HEADER_BYTES); }
    public static long requestGpa(MemorySegment in) { return in.get(BE_LONG, Protocol.HEADER_BYTES + 8); }
    public static int requestCount(MemorySegment in) { return in.get(BE_INT, Protocol.HEADER_BYTES + 16); }

    private static boolean soundRequest(long gpa, int count, long ramSize) {
        long end = gpa + (long) count * Protocol.PAGE;
        return (gpa & (Protocol.PAGE - 1)) == 0 && count >= 1 && count <= Protocol.MAX_PAGES_PER_MESSAGE && gpa >= 0 && end <= ramSize;
    }

    private static void refuseRequest(String peer, String message, long id, long gpa, int count, long ramSize) {
        throw new ProtocolException(String.format("%s: request %d (message %s) asks for [0x%x, +%d pages), not 1..64 whole pages inside guest RAM [0, 0x%x)",
                peer, id, message, gpa, count, ramSize));
    }

    public static long u64(Frame f, String peer, int type) {
        return decode(f, peer, type, ByteBuffer::getLong);
    }

    public static void transferred(ByteBuffer b, Transferred t) {
        b.putLong(t.demanded()).putLong(t.pushed()).put(t.digest());
    }

    public static Transferred transferred(Frame f, String peer) {
        return decode(f, peer, Protocol.TRANSFERRED, b -> {
            long d = b.getLong(), p = b.getLong();
            byte[] digest = new byte[32];
            b.get(digest);
            return new Transferred(d, p, digest);
        });
    }

    /** RESULT, VERDICT, ERROR: one string. */
    public static byte[] string(String s) {
        byte[] u = s.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(4 + u.length).putInt(u.length).put(u).array();
    }

    public static String string(Frame f, String peer, int type) {
        return decode(f, peer, type, Messages::str);
    }

    // ---------------------------------------------------------------- STATE

    public static void state(ByteBuffer b, List<VcpuState> states) {
        b.putInt(states.size());
        for (VcpuState s : states) {
            Regs r = s.regs();
            for (int i = 0; i < 16; i++) b.putLong(r.gpr[i]);
            b.putLong(r.rip).putLong(r.rflags);
            Sregs x = s.sregs();
            for (Segment g : List.of(x.cs(), x.ds(), x.es(), x.fs(), x.gs(), x.ss(), x.tr(), x.ldt())) segment(b, g);
            b.putLong(x.gdt().base()).putInt(x.gdt().limit()).putLong(x.idt().base()).putInt(x.idt().limit());
            b.putLong(x.cr0()).putLong(x.cr2()).putLong(x.cr3()).putLong(x.cr4()).putLong(x.cr8()).putLong(x.efer()).putLong(x.apicBase());
        }
    }

    public static List<VcpuState> state(Frame f, String peer, int vcpus) {
        List<VcpuState> l = decode(f, peer, Protocol.STATE, b -> {
            int n = b.getInt();
            if (n < 0 || n > 1024) throw new BufferUnderflowException();
            List<VcpuState> out = new ArrayList<>(n);
            for (int v = 0; v < n; v++) {
                Regs r = new Regs();
                for (int i = 0; i < 16; i++) r.gpr[i] = b.getLong();
                r.rip = b.getLong();
                r.rflags = b.getLong();
                Segment[] seg = new Segment[8];
                for (int i = 0; i < 8; i++) seg[i] = segment(b);
                DescriptorTable gdt = new DescriptorTable(b.getLong(), b.getInt()), idt = new DescriptorTable(b.getLong(), b.getInt());
                Sregs s = new Sregs(seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7], gdt, idt,
                        b.getLong(), b.getLong(), b.getLong(), b.getLong(), b.getLong(), b.getLong(), b.getLong());
                out.add(new VcpuState(r, s));
            }
            return out;
        });
        if (l.size() != vcpus) {
            throw new ProtocolException(peer + ": message " + f.describe() + " carries the state of " + l.size() + " vCPUs, the handshake announced " + vcpus);
        }
        return l;
    }

    private static void segment(ByteBuffer b, Segment s) {
        int flags = (s.present() ? 1 : 0) | (s.db() ? 2 : 0) | (s.s() ? 4 : 0) | (s.l() ? 8 : 0) | (s.g() ? 16 : 0)
                | (s.avl() ? 32 : 0) | (s.unusable() ? 64 : 0);
        b.putLong(s.base()).putInt(s.limit()).putShort((short) s.selector()).put((byte) s.type()).put((byte) s.dpl()).put((byte) flags);
    }

    private static Segment segment(ByteBuffer b) {
        long base = b.getLong();
        int limit = b.getInt(), selector = b.getShort() & 0xffff, type = b.get() & 0xff, dpl = b.get() & 0xff, f = b.get() & 0xff;
        return new Segment(base, limit, selector, type, (f & 1) != 0, dpl, (f & 2) != 0, (f & 4) != 0, (f & 8) != 0,
                (f & 16) != 0, (f & 32) != 0, (f & 64) != 0);
    }

    // ---------------------------------------------------------------- helpers

    private static void str(ByteBuffer b, String s) {
        byte[] u = s.getBytes(StandardCharsets.UTF_8);
        b.putInt(u.length).put(u);
    }

    private static String str(ByteBuffer b) {
        int n = b.getInt();
        if (n < 0 || n > b.remaining()) throw new BufferUnderflowException();
        byte[] u = new byte[n];
        b.get(u);
        return new String(u, StandardCharsets.UTF_8);
    }

    private interface Decoder<T> {
        T decode(ByteBuffer b);
    }

    private static void expectType(Frame f, String peer, int type) {
        if (f.type() != type) {
            throw new ProtocolException(peer + ": expected " + Protocol.typeName(type) + ", got message " + f.describe());
        }
    }

    /** Decodes a whole payload: too short or bytes left over are errors. */
    private static <T> T decode(Frame f, String peer, int type, Decoder<T> d) {
        expectType(f, peer, type);
        ByteBuffer b = f.payload().duplicate();
        T t;
        try {
            t = d.decode(b);
        } catch (BufferUnderflowException e) {
            throw new ProtocolException(peer + ": message " + f.describe() + " is too short (" + f.payload().remaining() + " bytes) for its fields");
        }
        if (b.hasRemaining()) {
            throw new ProtocolException(peer + ": message " + f.describe() + " has " + b.remaining() + " bytes after its last field");
        }
        return t;
    }

    /** Decodes the fixed prefix of a payload (the rest is checked by the caller). */
    private static <T> T decodePrefix(Frame f, String peer, int type, int bytes, Decoder<T> d) {
        expectType(f, peer, type);
        if (f.payload().remaining() < bytes) {
            throw new ProtocolException(peer + ": message " + f.describe() + " is too short (" + f.payload().remaining() + " bytes) for its "
                    + bytes + "-byte header");
        }
        return d.decode(f.payload().duplicate());
    }
}
