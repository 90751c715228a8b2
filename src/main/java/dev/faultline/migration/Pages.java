package dev.faultline.migration;

import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Pagemap;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.zip.CRC32C;

/** Encoding pages of guest RAM into PAGES messages, and the per-page digest both sides compare. */
public final class Pages {
    private Pages() {}

    public static final int PAGE = Protocol.PAGE;
    private static final ThreadLocal<CRC32C> CRC = ThreadLocal.withInitial(CRC32C::new);
    private static final MemorySegment ZERO_PAGE = Arena.global().allocate(PAGE, PAGE);
    private static final int ZERO_PAGE_CRC = crc(ByteBuffer.wrap(new byte[PAGE]), 0);

    public static boolean isZero(MemorySegment ram, long gpa) {
        return MemorySegment.mismatch(ram, gpa, gpa + PAGE, ZERO_PAGE, 0, PAGE) == -1;
    }

    /**
     * Writes a PAGES payload for [gpa, gpa + count pages) of {@code ram} into {@code b}: the header,
     * a zero mask, and the non-zero pages. Returns the number of non-zero pages written.
     */
    public static int encode(ByteBuffer b, MemorySegment ram, long gpa, int count, int purpose, long requestId) {
        return encode(b, ram, gpa, count, purpose, requestId, 0);
    }

    /**
     * As {@link #encode(ByteBuffer, MemorySegment, long, int, int, long)}, with the pages already
     * known to be zeros (bit i: page i; {@link dev.faultline.sys.Pagemap#neverPopulated}) not read.
     */
    public static int encode(ByteBuffer b, MemorySegment ram, long gpa, int count, int purpose, long requestId, long knownZero) {
        return encode(b, b.isDirect() ? MemorySegment.ofBuffer(b) : null, ram, gpa, count, purpose, requestId, knownZero);
    }

    /**
     * As {@link #encode(ByteBuffer, MemorySegment, long, int, int, long, long)}, writing the pages
     * through {@code out}, a segment of {@code b} from its current position (null for a heap buffer):
     * a sender that keeps one ({@link Connection#sendSegment}) makes nothing per message.
     */
    public static int encode(ByteBuffer b, MemorySegment out, MemorySegment ram, long gpa, int count, int purpose, long requestId, long knownZero) {
        int start = b.position();
        b.position(start + Messages.PagesHeader.BYTES);
        long mask = 0;
        int data = 0;
        for (int i = 0; i < count; i++) {
            long g = gpa + (long) i * PAGE;
            if ((knownZero & (1L << i)) != 0 || isZero(ram, g)) {
                mask |= 1L << i;
            } else {
                if (out != null) MemorySegment.copy(ram, g, out, b.position() - start, PAGE);
                else MemorySegment.copy(ram, ValueLayout.JAVA_BYTE, g, b.array(), b.arrayOffset() + b.position(), PAGE);
                b.position(b.position() + PAGE);
                data++;
            }
        }
        int end = b.position();
        b.position(start);
        Messages.pagesHeader(b, gpa, count, purpose, requestId, mask);
        b.position(end);
        return data;
    }

    /**
     * CRC32C of the page at {@code off} of {@code b} (a received payload, native or heap); uses b's
     * position and limit and leaves them at 0 and its capacity.
     */
    public static int crc(ByteBuffer b, int off) {
        CRC32C c = CRC.get();
        c.reset();
        c.update(b.limit(off + PAGE).position(off));
        b.limit(b.capacity()).position(0);
        return (int) c.getValue();
    }

    public static int zeroPageCrc() { return ZERO_PAGE_CRC; }

    /** CRC32C of the page at {@code gpa} of {@code ram}. */
    public static int crc(MemorySegment ram, long gpa, CRC32C c) {
        c.reset();
        c.update(ram.asSlice(gpa, PAGE).asByteBuffer());
        return (int) c.getValue();
    }

    /**
     * The transfer digest: SHA-256 over the CRC32C of every page of RAM in address order (u32 each,
     * big-endian). Equal on both sides means every page the destination accepted is the page the
     * source had at the switch-over.
     */
    public static byte[] digest(int[] pageCrcs) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            ByteBuffer b = ByteBuffer.allocate(4 * 4096);
            for (int i = 0; i < pageCrcs.length; i++) {
                b.putInt(pageCrcs[i]);
                if (!b.hasRemaining()) {
                    md.update(b.array(), 0, b.position());
                    b.clear();
                }
            }
            md.update(b.array(), 0, b.position());
            return md.digest();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 missing from the JDK", e);
        }
    }

    /**
     * The page CRCs of all of {@code mem}, as the source computes them on its frozen RAM; pages the
     * page table says were never populated are zeros without reading them.
     */
    public static int[] crcs(HostMemory mem) {
        MemorySegment ram = mem.segment();
        int[] out = new int[(int) (ram.byteSize() / PAGE)];
        CRC32C c = new CRC32C();
        try (Pagemap pagemap = Pagemap.open()) {
            for (int first = 0; first < out.length; first += Pagemap.MAX_PAGES) {
                int n = Math.min(Pagemap.MAX_PAGES, out.length - first);
                long known = pagemap.neverPopulated(mem, (long) first * PAGE, n);
                for (int k = 0; k < n; k++) {
                    long g = (long) (first + k) * PAGE;
                    out[first + k] = (known & (1L << k)) != 0 || isZero(ram, g) ? ZERO_PAGE_CRC : crc(ram, g, c);
                }
            }
        }
        return out;
    }
}
