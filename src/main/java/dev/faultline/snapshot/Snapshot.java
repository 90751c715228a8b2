package dev.faultline.snapshot;

import dev.faultline.sys.Errno;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An opened snapshot directory whose description, page map, chunk table and file sizes have been
 * checked ({@link #open}); chunk data is checked per chunk as it is first read ({@link #loadChunk}),
 * or all at once ({@link #verifyAllChunks}). Reads use pread(2) on one descriptor: any number of
 * threads read at once. Close after every reader has stopped.
 *
 * <p>Opening is two steps so a restore can build its machine while the second runs:
 * {@link #readDescription} checks the description alone (everything a machine is built from: RAM
 * size, memslots, vCPU registers); {@link #open(Path, SnapshotDescription)} then checks the files.
 */
public final class Snapshot implements AutoCloseable {
    /** Chunk states. */
    static final int UNCHECKED = 0, VERIFIED = 1, CORRUPT = 2;

    private final Path dir;
    private final SnapshotDescription description;
    private final PageMap map;
    private final ChunkTable table;
    private final AtomicIntegerArray chunkState;
    private final String[] corruption;
    private final int fd;
    private final AtomicLong chunksVerified = new AtomicLong(), verifyNanos = new AtomicLong(), bytesRead = new AtomicLong();
    private volatile boolean closed;

    private Snapshot(Path dir, SnapshotDescription description, PageMap map, ChunkTable table, int fd) {
        this.dir = dir;
        this.description = description;
        this.map = map;
        this.table = table;
        this.fd = fd;
        int n = table.count();
        this.chunkState = new AtomicIntegerArray(n);
        this.corruption = new String[n];
    }

    /**
     * Opens {@code dir} and checks everything but the chunks' data: {@link #readDescription}, then
     * {@link #open(Path, SnapshotDescription)}.
     * @throws SnapshotException one line naming the file and what is wrong
     */
    public static Snapshot open(Path dir) {
        return open(dir, readDescription(dir));
    }

    /**
     * Reads and checks {@value SnapshotFormat#DESCRIPTION_FILE} alone: format version, sizes,
     * memslots, registers, guest, and the names, lengths and checksum syntax of the other files.
     * @throws SnapshotException one line naming the file and the JSON path at fault
     */
    public static SnapshotDescription readDescription(Path dir) {
        if (!Files.isDirectory(dir)) throw new SnapshotException(dir + " is not a directory (a snapshot is a directory)");
        Path descFile = dir.resolve(SnapshotFormat.DESCRIPTION_FILE);
        byte[] json = readAll(descFile, "a snapshot's description; the directory is not a snapshot, or its writing was interrupted");
        SnapshotDescription d = DescriptionJson.parse(descFile.toString(), json);
        SnapshotValidator.check(descFile.toString(), d);
        return d;
    }

    /**
     * Opens {@code dir} whose description {@code d} was read by {@link #readDescription}, and checks
     * the files against it: the page map and the chunk table (length, whole-file SHA-256, contents,
     * and that they agree on every chunk's stored pages) and the memory file's length.
     * @throws SnapshotException one line naming the file and what is wrong
     */
    public static Snapshot open(Path dir, SnapshotDescription d) {
        Path mapFile = dir.resolve(SnapshotFormat.PAGE_MAP_FILE);
        byte[] mapBytes = readChecked(mapFile, "the page map", d.pageMap());
        PageMap map = PageMap.read(mapFile.toString(), mapBytes, d.ramBytes());
        Path tableFile = dir.resolve(SnapshotFormat.CHUNK_TABLE_FILE);
        byte[] tableBytes = readChecked(tableFile, "the chunk table", d.chunkTable());
        ChunkTable table = ChunkTable.read(tableFile.toString(), tableBytes, d.ramBytes());
        if (table.storedPages() != d.memory().storedPages()) {
            throw new SnapshotException(tableFile + " lists " + table.storedPages() + " stored pages, the description's memory.stored_pages says "
                    + d.memory().storedPages());
        }
        for (int c = 0; c < table.count(); c++) {
            int n = map.countInChunk(c);
            if (n != table.pages(c)) {
                throw new SnapshotException(mapFile + " marks " + n + " stored pages in chunk " + c + ", " + tableFile.getFileName() + " says " + table.pages(c));
            }
        }
        Path memFile = dir.resolve(SnapshotFormat.MEMORY_FILE);
        long size;
        try {
            size = Files.size(memFile);
        } catch (NoSuchFileException e) {
            throw new SnapshotException(memFile + " is missing (the snapshot's memory)");
        } catch (IOException e) {
            throw new SnapshotException(memFile + " cannot be read: " + e.getMessage(), e);
        }
        if (size != d.memory().bytes()) {
            throw new SnapshotException(memFile + " has " + size + " bytes, the description says " + d.memory().bytes() + " ("
                    + d.memory().storedPages() + " stored pages)" + (size < d.memory().bytes() ? ": truncated" : ": longer than written"));
        }
        int fd = Libc.open(memFile.toString(), Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd == -1) throw new SnapshotException(memFile + " cannot be opened: " + Errno.describe(Libc.lastErrno()));
        return new Snapshot(dir, d, map, table, fd);
    }

    /** Reads a whole index file and checks its length and SHA-256 against the description. */
    private static byte[] readChecked(Path file, String what, SnapshotDescription.IndexFile expected) {
        byte[] bytes = readAll(file, what);
        if (bytes.length != expected.bytes()) {
            throw new SnapshotException(file + " has " + bytes.length + " bytes, the description says " + expected.bytes()
                    + (bytes.length < expected.bytes() ? " (truncated)" : ""));
        }
        String sha = SnapshotWriter.hex(SnapshotWriter.sha256().digest(bytes));
        if (!sha.equals(expected.sha256())) {
            throw new SnapshotException(file + " has SHA-256 " + sha + ", the description says " + expected.sha256() + " (corrupted)");
        }
        return bytes;
    }

    private static byte[] readAll(Path file, String what) {
        try {
            return Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new SnapshotException(file + " is missing (" + what + ")");
        } catch (IOException e) {
            throw new SnapshotException(file + " cannot be read: " + e.getMessage(), e);
        }
    }

    public Path dir() { return dir; }
    public SnapshotDescription description() { return description; }
    public PageMap pageMap() { return map; }
    public ChunkTable chunkTable() { return table; }
    public long ramBytes() { return description.ramBytes(); }
    public Path memoryFile() { return dir.resolve(SnapshotFormat.MEMORY_FILE); }

    public long chunksVerified() { return chunksVerified.get(); }
    public long verifyNanos() { return verifyNanos.get(); }
    public long bytesRead() { return bytesRead.get(); }

    public boolean isVerified(int chunk) { return chunkState.get(chunk) == VERIFIED; }

    /** A staging buffer as large as one chunk (one per reading thread). */
    public static MemorySegment chunkBuffer() {
        return HostMemory.scratch(SnapshotFormat.CHUNK_BYTES);
    }

    /**
     * Reads chunk {@code chunk}'s stored pages into {@code buffer} (packed, as in the file) and checks
     * their SHA-256 unless the chunk was verified before. Returns the stored page count.
     * @throws SnapshotException naming the file, the chunk, and the expected and actual SHA-256
     */
    public int loadChunk(int chunk, MemorySegment buffer, MessageDigest md) {
        String bad = corruption[chunk];
        if (chunkState.get(chunk) == CORRUPT && bad != null) throw new SnapshotException(bad);
        int pages = table.pages(chunk);
        long bytes = (long) pages * SnapshotFormat.PAGE, offset = table.offset(chunk);
        readFully(buffer, 0, bytes, offset);
        if (chunkState.get(chunk) == VERIFIED) return pages;
        long t0 = System.nanoTime();
        md.reset();
        if (bytes > 0) md.update(buffer.asSlice(0, bytes).asByteBuffer());
        byte[] got = md.digest();
        verifyNanos.addAndGet(System.nanoTime() - t0);
        if (!table.shaMatches(chunk, got)) {
            long gpa = table.gpa(chunk);
            String msg = String.format("%s: chunk %d (gpa 0x%x-0x%x, %d stored pages at offset %d) has SHA-256 %s, %s says %s (corrupted)",
                    memoryFile(), chunk, gpa, Math.min(ramBytes(), gpa + SnapshotFormat.CHUNK_BYTES), pages, offset,
                    SnapshotWriter.hex(got), SnapshotFormat.CHUNK_TABLE_FILE, table.sha256(chunk));
            corruption[chunk] = msg;
            chunkState.set(chunk, CORRUPT);
            throw new SnapshotException(msg);
        }
        if (chunkState.compareAndSet(chunk, UNCHECKED, VERIFIED)) chunksVerified.incrementAndGet();
        return pages;
    }

    /** Checks every chunk's SHA-256 (reading all stored memory once). */
    public void verifyAllChunks() {
        MemorySegment buf = chunkBuffer();
        MessageDigest md = SnapshotWriter.sha256();
        for (int c = 0; c < table.count(); c++) loadChunk(c, buf, md);
    }

    /**
     * Eager restore: writes every stored page into {@code ram} (offset = gpa; RAM must read as zeros
     * already, as fresh guest RAM does), checking each chunk before any of its pages lands in RAM.
     */
    public void readInto(MemorySegment ram) {
        readChunksInto(ram, 0, table.count());
    }

    /** Writes chunks [from, to) into {@code ram} as {@link #readInto} does. */
    public void readChunksInto(MemorySegment ram, int from, int to) {
        MemorySegment buf = chunkBuffer();
        MessageDigest md = SnapshotWriter.sha256();
        for (int c = from; c < to; c++) {
            loadChunk(c, buf, md);
            copyLoadedChunk(c, buf, ram);
        }
    }

    /**
     * Writes chunk {@code chunk}'s stored pages, as {@link #loadChunk} left them packed in
     * {@code buffer}, to their guest-physical places in {@code ram}.
     */
    public void copyLoadedChunk(int chunk, MemorySegment buffer, MemorySegment ram) {
        if (table.pages(chunk) == 0) return;
        long first = (long) chunk * SnapshotFormat.PAGES_PER_CHUNK;
        long end = Math.min(first + SnapshotFormat.PAGES_PER_CHUNK, ramBytes() / SnapshotFormat.PAGE);
        long k = 0;
        for (long p = first; p < end; p++) {
            if (!map.isStored(p)) continue;
            MemorySegment.copy(buffer, k * SnapshotFormat.PAGE, ram, p * SnapshotFormat.PAGE, SnapshotFormat.PAGE);
            k++;
        }
    }

    /** pread of [fileOffset, +len) into dst at dstOffset; a short file is a truncation, named. */
    void readFully(MemorySegment dst, long dstOffset, long len, long fileOffset) {
        if (closed) throw new SnapshotException(memoryFile() + " is closed (read at offset " + fileOffset + ")");
        long base = dst.address() + dstOffset;
        long done = 0;
        while (done < len) {
            long n = Libc.pread(fd, base + done, len - done, fileOffset + done);
            if (n == -1) {
                int errno = Libc.lastErrno();
                if (errno == Errno.EINTR) continue;
                throw new SnapshotException(memoryFile() + ": pread of " + (len - done) + " bytes at offset " + (fileOffset + done)
                        + " failed: " + Errno.describe(errno));
            }
            if (n == 0) {
                throw new SnapshotException(memoryFile() + ": unexpected end of file at offset " + (fileOffset + done)
                        + " (the description says " + description.memory().bytes() + " bytes; truncated after it was opened?)");
            }
            done += n;
        }
        bytesRead.addAndGet(len);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.close(fd);
    }
}
