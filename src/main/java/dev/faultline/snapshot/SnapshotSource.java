package dev.faultline.snapshot;

import dev.faultline.paging.PageSource;
import dev.faultline.paging.PageSourceException;
import java.lang.foreign.MemorySegment;
import java.security.MessageDigest;

/**
 * Pages of guest RAM from a {@link Snapshot}, for the fault core. A page the map says is zero is
 * reported by {@link #isZero} (the core installs zeros without reading). A stored page is read with
 * one pread per run of stored pages; the first read from a chunk reads the whole chunk and checks
 * its SHA-256 first, so a page whose chunk fails its check is never handed out: {@link #fill} throws,
 * the core leaves the page missing, and the delivery stops the machine with this source's message.
 *
 * <p>Threading: any number of lanes call {@link #fill} at once; each thread has its own chunk
 * buffer and digest (allocated on its first chunk check, then reused: nothing allocated per page).
 */
public final class SnapshotSource implements PageSource {
    private static final int PAGE = SnapshotFormat.PAGE;

    private final Snapshot snapshot;
    private final PageMap map;
    private final ThreadLocal<MemorySegment> buffers = ThreadLocal.withInitial(Snapshot::chunkBuffer);
    private final ThreadLocal<MessageDigest> digests = ThreadLocal.withInitial(SnapshotWriter::sha256);

    public SnapshotSource(Snapshot snapshot) {
        this.snapshot = snapshot;
        this.map = snapshot.pageMap();
    }

    public Snapshot snapshot() { return snapshot; }

    @Override
    public void fill(long gpa, MemorySegment dst, long dstOffset, long len) {
        try {
            long end = gpa + len;
            while (gpa < end) {
                int chunk = (int) (gpa / SnapshotFormat.CHUNK_BYTES);
                long chunkEnd = Math.min(end, (long) (chunk + 1) * SnapshotFormat.CHUNK_BYTES);
                if (snapshot.isVerified(chunk)) fillFromFile(gpa, chunkEnd, dst, dstOffset);
                else fillFromCheckedChunk(chunk, gpa, chunkEnd, dst, dstOffset);
                dstOffset += chunkEnd - gpa;
                gpa = chunkEnd;
            }
        } catch (SnapshotException e) {
            throw new PageSourceException(e.getMessage(), e);
        }
    }

    /** Runs of stored pages straight from the file; zero pages as zeros. */
    private void fillFromFile(long gpa, long end, MemorySegment dst, long dstOffset) {
        long page = gpa / PAGE, last = end / PAGE;
        while (page < last) {
            long run = page;
            boolean stored = map.isStored(page);
            while (run < last && map.isStored(run) == stored) run++;
            long off = dstOffset + (page * PAGE - gpa), bytes = (run - page) * PAGE;
            if (stored) snapshot.readFully(dst, off, bytes, map.storedIndex(page) * PAGE);
            else dst.asSlice(off, bytes).fill((byte) 0);
            page = run;
        }
    }

    /** First read from the chunk: load and check it whole, then copy the asked pages from the buffer. */
    private void fillFromCheckedChunk(int chunk, long gpa, long end, MemorySegment dst, long dstOffset) {
        MemorySegment buf = buffers.get();
        snapshot.loadChunk(chunk, buf, digests.get());
        long first = (long) chunk * SnapshotFormat.PAGES_PER_CHUNK;
        long base = map.storedIndex(first);
        for (long page = gpa / PAGE; page < end / PAGE; page++) {
            long off = dstOffset + (page * PAGE - gpa);
            if (map.isStored(page)) MemorySegment.copy(buf, (map.storedIndex(page) - base) * PAGE, dst, off, PAGE);
            else dst.asSlice(off, PAGE).fill((byte) 0);
        }
    }

    @Override
    public boolean isZero(long gpa, long len) {
        for (long page = gpa / PAGE, last = (gpa + len) / PAGE; page < last; page++) if (map.isStored(page)) return false;
        return true;
    }

    @Override
    public String describe() {
        return "snapshot " + snapshot.dir() + " (" + map.storedPages() + " stored pages)";
    }
}
