package dev.faultline.sys;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * This process's page table as the kernel shows it in /proc/self/pagemap (one u64 per virtual page:
 * bit 63 present, bit 62 swapped). A page of private anonymous memory that is neither present nor
 * swapped was never populated, or was dropped: it reads as zeros, and reading it would only fault
 * in the shared zero page. Asking the page table instead of reading saves the fault and the read
 * (about 0.2 s per GiB of untouched memory here).
 *
 * <p>One instance per thread (it owns a read buffer). If pagemap cannot be read (no procfs, a
 * container that hides it), every query answers "not known", and callers read the memory as before.
 */
public final class Pagemap implements AutoCloseable {
    private static final long PRESENT = 1L << 63, SWAPPED = 1L << 62;
    public static final int MAX_PAGES = 64;

    private final FileChannel channel;
    private final ByteBuffer buf = ByteBuffer.allocateDirect(MAX_PAGES * 8).order(ByteOrder.nativeOrder());

    private Pagemap(FileChannel channel) {
        this.channel = channel;
    }

    /** Opens /proc/self/pagemap; an instance that knows nothing if it cannot be read. */
    public static Pagemap open() {
        try {
            return new Pagemap(FileChannel.open(Path.of("/proc/self/pagemap"), StandardOpenOption.READ));
        } catch (IOException | SecurityException | UnsupportedOperationException e) {
            return new Pagemap(null);
        }
    }

    /** Whether queries can answer at all. */
    public boolean available() { return channel != null; }

    /**
     * The pages of {@code mem} in [offset, offset + pages × 4 KiB) that were never populated, as a
     * mask (bit i: page i), for up to {@link #MAX_PAGES} pages. Only private anonymous memory can
     * answer (a memfd page absent from this page table may still hold data in the page cache); for
     * any other memory, or when pagemap cannot be read, the answer is 0: nothing known.
     */
    public long neverPopulated(HostMemory mem, long offset, int pages) {
        if (channel == null || mem.kind() != HostMemory.Kind.ANONYMOUS || pages <= 0) return 0;
        if (pages > MAX_PAGES) throw new IllegalArgumentException("at most " + MAX_PAGES + " pages per query, got " + pages);
        if (offset < 0 || (offset & 0xfff) != 0 || offset + (long) pages * 4096 > mem.size()) {
            throw new IllegalArgumentException(String.format("pages [0x%x, +%d) are not page-aligned inside the %d-byte mapping", offset, pages, mem.size()));
        }
        long position = (mem.address() + offset) / 4096 * 8;
        buf.clear().limit(pages * 8);
        try {
            while (buf.hasRemaining()) {
                if (channel.read(buf, position + buf.position()) < 0) return 0;
            }
        } catch (IOException e) {
            return 0;
        }
        long mask = 0;
        for (int i = 0; i < pages; i++) {
            if ((buf.getLong(i * 8) & (PRESENT | SWAPPED)) == 0) mask |= 1L << i;
        }
        return mask;
    }

    @Override
    public void close() {
        if (channel == null) return;
        try {
            channel.close();
        } catch (IOException ignored) {
            // a read-only procfs file: nothing to flush
        }
    }
}
