package dev.faultline.snapshot;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Which pages of guest RAM a snapshot stores, and where: one bit per 4 KiB page (set: stored in
 * {@value SnapshotFormat#MEMORY_FILE}; clear: the page is all zeros and not stored). Stored pages are
 * packed in guest-physical order, so the file offset of a stored page is
 * {@code chunkOffset(chunk) + 4096 * (stored pages before it in its chunk)}: one popcount over at most
 * four words, no search. For 1 GiB of RAM the map is 32 KiB.
 *
 * <p>File layout of {@value SnapshotFormat#PAGE_MAP_FILE} (little-endian):
 * <pre>
 *  0        4        8                16       20       24
 * +--------+--------+----------------+--------+--------+
 * | "FLPM" | ver=1  |   RAM bytes    | chunk  | chunks |   header, 24 bytes
 * +--------+--------+----------------+--------+--------+
 * | chunk 0: 4 x u64 bitmap (bit p of word w = page 64w+p of the chunk) |  32 bytes per chunk
 * | chunk 1: ...                                                          |
 * </pre>
 * Immutable after {@link #read}; safe for any number of reader threads.
 */
public final class PageMap {
    public static final int MAGIC = 0x4d504c46; // "FLPM" read little-endian
    public static final int VERSION = 1;
    public static final int HEADER_BYTES = 24;
    public static final int WORDS_PER_CHUNK = SnapshotFormat.PAGES_PER_CHUNK / 64;
    public static final int CHUNK_ENTRY_BYTES = WORDS_PER_CHUNK * 8;

    private final long ramBytes;
    private final int chunks;
    private final long[] bits;
    /** Stored pages before each chunk (prefix sums), chunks + 1 entries. */
    private final long[] storedBefore;

    private PageMap(long ramBytes, long[] bits) {
        this.ramBytes = ramBytes;
        this.chunks = SnapshotFormat.chunkCount(ramBytes);
        this.bits = bits;
        this.storedBefore = new long[chunks + 1];
        for (int c = 0; c < chunks; c++) storedBefore[c + 1] = storedBefore[c] + countInChunk(c);
    }

    /** An empty map (nothing stored) for {@code ramBytes} of RAM, to be filled with {@link Builder#markStored}. */
    static Builder builder(long ramBytes) {
        return new Builder(ramBytes);
    }

    static final class Builder {
        private final long ramBytes;
        private final long[] bits;

        private Builder(long ramBytes) {
            this.ramBytes = ramBytes;
            this.bits = new long[SnapshotFormat.chunkCount(ramBytes) * WORDS_PER_CHUNK];
        }

        void markStored(long page) {
            bits[(int) (page >>> 6)] |= 1L << (page & 63);
        }

        PageMap build() {
            return new PageMap(ramBytes, bits.clone());
        }
    }

    /**
     * The RAM size the header of the page map file {@code file} names, or -1 when the file cannot be
     * read or does not start with a page map header of this version. Unchecked against anything: a
     * guess to start building a machine with before the description is read ({@link Snapshot#open}
     * checks the header against the description later).
     */
    static long ramBytesInHeader(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            byte[] h = in.readNBytes(HEADER_BYTES);
            if (h.length < HEADER_BYTES) return -1;
            ByteBuffer b = ByteBuffer.wrap(h).order(ByteOrder.LITTLE_ENDIAN);
            if (b.getInt(0) != MAGIC || b.getInt(4) != VERSION) return -1;
            long ram = b.getLong(8);
            return ram > 0 && ram % SnapshotFormat.PAGE == 0 ? ram : -1;
        } catch (IOException e) {
            return -1;
        }
    }

    public static long fileBytes(long ramBytes) {
        return HEADER_BYTES + (long) SnapshotFormat.chunkCount(ramBytes) * CHUNK_ENTRY_BYTES;
    }

    /** The file form. */
    byte[] toBytes() {
        ByteBuffer b = ByteBuffer.allocate((int) fileBytes(ramBytes)).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(MAGIC).putInt(VERSION).putLong(ramBytes).putInt(SnapshotFormat.CHUNK_BYTES).putInt(chunks);
        for (long w : bits) b.putLong(w);
        return b.array();
    }

    /**
     * Parses the file form, checking the header against what the description says.
     * @throws SnapshotException naming {@code file} and the field that differs
     */
    static PageMap read(String file, byte[] data, long ramBytes) {
        long want = fileBytes(ramBytes);
        if (data.length != want) {
            throw new SnapshotException(file + " has " + data.length + " bytes, expected " + want + " for " + ramBytes
                    + " bytes of RAM" + (data.length < want ? " (truncated?)" : ""));
        }
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        int magic = b.getInt(), version = b.getInt();
        long ram = b.getLong();
        int chunk = b.getInt(), chunks = b.getInt();
        if (magic != MAGIC) throw new SnapshotException(file + " is not a page map: magic 0x" + Integer.toHexString(magic) + ", expected 0x" + Integer.toHexString(MAGIC));
        if (version != VERSION) throw new SnapshotException(file + ": page map version " + version + ", this build reads version " + VERSION);
        if (ram != ramBytes) throw new SnapshotException(file + " maps " + ram + " bytes of RAM, the description says " + ramBytes);
        if (chunk != SnapshotFormat.CHUNK_BYTES) throw new SnapshotException(file + ": chunk size " + chunk + ", expected " + SnapshotFormat.CHUNK_BYTES);
        if (chunks != SnapshotFormat.chunkCount(ramBytes)) throw new SnapshotException(file + ": " + chunks + " chunks, expected " + SnapshotFormat.chunkCount(ramBytes));
        long[] bits = new long[chunks * WORDS_PER_CHUNK];
        for (int i = 0; i < bits.length; i++) bits[i] = b.getLong();
        long pages = ramBytes / SnapshotFormat.PAGE;
        for (long p = pages; p < (long) chunks * SnapshotFormat.PAGES_PER_CHUNK; p++) {
            if ((bits[(int) (p >>> 6)] & (1L << (p & 63))) != 0) {
                throw new SnapshotException(String.format("%s marks page 0x%x as stored, past the end of RAM (0x%x)", file, p * SnapshotFormat.PAGE, ramBytes));
            }
        }
        return new PageMap(ramBytes, bits);
    }

    public long ramBytes() { return ramBytes; }
    public int chunks() { return chunks; }
    public long storedPages() { return storedBefore[chunks]; }

    public boolean isStored(long page) {
        return (bits[(int) (page >>> 6)] & (1L << (page & 63))) != 0;
    }

    public int countInChunk(int chunk) {
        int n = 0;
        for (int w = 0; w < WORDS_PER_CHUNK; w++) n += Long.bitCount(bits[chunk * WORDS_PER_CHUNK + w]);
        return n;
    }

    /** Stored pages before chunk {@code chunk} (so its data starts at that many pages into the memory file). */
    public long storedBefore(int chunk) { return storedBefore[chunk]; }

    /** Index in the memory file (in pages) of stored page {@code page}. */
    public long storedIndex(long page) {
        int chunk = (int) (page / SnapshotFormat.PAGES_PER_CHUNK);
        long idx = storedBefore[chunk];
        int first = chunk * WORDS_PER_CHUNK, word = (int) (page >>> 6);
        for (int w = first; w < word; w++) idx += Long.bitCount(bits[w]);
        return idx + Long.bitCount(bits[word] & ((1L << (page & 63)) - 1));
    }
}
