package dev.faultline.snapshot;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.HexFormat;

/**
 * Where each 1 MiB chunk of guest-physical memory lies in {@value SnapshotFormat#MEMORY_FILE} and the
 * SHA-256 of its stored pages: the binary form of the chunk table, so that a restore reads a few
 * dozen KiB and compares bytes instead of parsing a thousand JSON objects and hex strings.
 * {@value SnapshotFormat#DESCRIPTION_FILE} names this file with its length and SHA-256, so a
 * corrupted table is refused before any of it is used.
 *
 * <p>File layout of {@value SnapshotFormat#CHUNK_TABLE_FILE} (little-endian):
 * <pre>
 *  0        4        8                16       20       24               32
 * +--------+--------+----------------+--------+--------+----------------+
 * | "FLCT" | ver=1  |   RAM bytes    | chunk  | chunks |  stored pages  |   header, 32 bytes
 * +--------+--------+----------------+--------+--------+----------------+
 *  per chunk, 48 bytes:
 *  0                8        12       16                                 48
 * +----------------+--------+--------+----------------------------------+
 * | offset in file | pages  |   0    | SHA-256 of its stored pages      |
 * +----------------+--------+--------+----------------------------------+
 * </pre>
 * {@code offset} is 4096 × the stored pages of the chunks before it; {@code pages} is the chunk's
 * stored page count (the page map must agree). Immutable after {@link #read}; safe for any number of
 * reader threads.
 */
public final class ChunkTable {
    public static final int MAGIC = 0x54434c46; // "FLCT" read little-endian
    public static final int VERSION = 1;
    public static final int HEADER_BYTES = 32;
    public static final int ENTRY_BYTES = 48;
    public static final int SHA_BYTES = 32;

    private static final int OFF_MAGIC = 0, OFF_VERSION = 4, OFF_RAM = 8, OFF_CHUNK = 16, OFF_COUNT = 20, OFF_STORED = 24;
    private static final int ENTRY_OFFSET = 0, ENTRY_PAGES = 8, ENTRY_RESERVED = 12, ENTRY_SHA = 16;

    private final long ramBytes;
    private final long[] offsets;
    private final int[] pages;
    /** SHA-256 of chunk i at [32 i, 32 i + 32). */
    private final byte[] sha;

    private ChunkTable(long ramBytes, long[] offsets, int[] pages, byte[] sha) {
        this.ramBytes = ramBytes;
        this.offsets = offsets;
        this.pages = pages;
        this.sha = sha;
    }

    public static long fileBytes(long ramBytes) {
        return HEADER_BYTES + (long) SnapshotFormat.chunkCount(ramBytes) * ENTRY_BYTES;
    }

    /** Collects the table while memory is written, chunk by chunk in order. */
    static final class Builder {
        private final long ramBytes;
        private final long[] offsets;
        private final int[] pages;
        private final byte[] sha;
        private int next;
        private long stored;

        Builder(long ramBytes) {
            this.ramBytes = ramBytes;
            int n = SnapshotFormat.chunkCount(ramBytes);
            this.offsets = new long[n];
            this.pages = new int[n];
            this.sha = new byte[n * SHA_BYTES];
        }

        /** Adds the next chunk: {@code storedPages} pages, whose SHA-256 is {@code digest}. */
        void add(int storedPages, byte[] digest) {
            if (digest.length != SHA_BYTES) throw new IllegalArgumentException("a SHA-256 has 32 bytes, got " + digest.length);
            offsets[next] = stored * SnapshotFormat.PAGE;
            pages[next] = storedPages;
            System.arraycopy(digest, 0, sha, next * SHA_BYTES, SHA_BYTES);
            stored += storedPages;
            next++;
        }

        ChunkTable build() {
            if (next != offsets.length) throw new IllegalStateException(next + " of " + offsets.length + " chunks added");
            return new ChunkTable(ramBytes, offsets, pages, sha);
        }
    }

    /** The file form. */
    byte[] toBytes() {
        ByteBuffer b = ByteBuffer.allocate((int) fileBytes(ramBytes)).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(OFF_MAGIC, MAGIC).putInt(OFF_VERSION, VERSION).putLong(OFF_RAM, ramBytes).putInt(OFF_CHUNK, SnapshotFormat.CHUNK_BYTES)
                .putInt(OFF_COUNT, count()).putLong(OFF_STORED, storedPages());
        for (int i = 0; i < count(); i++) {
            int e = HEADER_BYTES + i * ENTRY_BYTES;
            b.putLong(e + ENTRY_OFFSET, offsets[i]).putInt(e + ENTRY_PAGES, pages[i]).putInt(e + ENTRY_RESERVED, 0);
            b.put(e + ENTRY_SHA, sha, i * SHA_BYTES, SHA_BYTES);
        }
        return b.array();
    }

    /**
     * Parses the file form and checks it against itself and {@code ramBytes}: header, chunk count,
     * pages within each chunk's capacity, offsets as prefix sums of the pages before, the stored total.
     * @throws SnapshotException naming {@code file} and the field or chunk that is wrong
     */
    static ChunkTable read(String file, byte[] data, long ramBytes) {
        long want = fileBytes(ramBytes);
        if (data.length < HEADER_BYTES) {
            throw new SnapshotException(file + " has " + data.length + " bytes, shorter than its " + HEADER_BYTES + "-byte header (truncated)");
        }
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        int magic = b.getInt(OFF_MAGIC), version = b.getInt(OFF_VERSION);
        if (magic != MAGIC) throw new SnapshotException(file + " is not a chunk table: magic 0x" + Integer.toHexString(magic) + ", expected 0x" + Integer.toHexString(MAGIC));
        if (version != VERSION) throw new SnapshotException(file + ": chunk table version " + version + ", this build reads version " + VERSION);
        long ram = b.getLong(OFF_RAM);
        if (ram != ramBytes) throw new SnapshotException(file + " describes " + ram + " bytes of RAM, the description says " + ramBytes);
        int chunk = b.getInt(OFF_CHUNK), n = b.getInt(OFF_COUNT);
        if (chunk != SnapshotFormat.CHUNK_BYTES) throw new SnapshotException(file + ": chunk size " + chunk + ", expected " + SnapshotFormat.CHUNK_BYTES);
        if (n != SnapshotFormat.chunkCount(ramBytes)) {
            throw new SnapshotException(file + " lists " + n + " chunks, RAM of " + ramBytes + " bytes has " + SnapshotFormat.chunkCount(ramBytes));
        }
        if (data.length != want) {
            throw new SnapshotException(file + " has " + data.length + " bytes, expected " + want + " for " + n + " chunks"
                    + (data.length < want ? " (truncated)" : ""));
        }
        long[] offsets = new long[n];
        int[] pages = new int[n];
        byte[] sha = new byte[n * SHA_BYTES];
        long stored = 0;
        for (int i = 0; i < n; i++) {
            int e = HEADER_BYTES + i * ENTRY_BYTES;
            long gpa = (long) i * SnapshotFormat.CHUNK_BYTES;
            long capacity = (Math.min(ramBytes, gpa + SnapshotFormat.CHUNK_BYTES) - gpa) / SnapshotFormat.PAGE;
            offsets[i] = b.getLong(e + ENTRY_OFFSET);
            pages[i] = b.getInt(e + ENTRY_PAGES);
            if (pages[i] < 0 || pages[i] > capacity) throw new SnapshotException(file + ": chunk " + i + " stores " + pages[i] + " pages, the chunk has " + capacity);
            if (offsets[i] != stored * SnapshotFormat.PAGE) {
                throw new SnapshotException(file + ": chunk " + i + " starts at offset " + offsets[i] + ", expected " + stored * SnapshotFormat.PAGE
                        + " (the pages of the chunks before it)");
            }
            if (b.getInt(e + ENTRY_RESERVED) != 0) throw new SnapshotException(file + ": chunk " + i + " has a non-zero reserved field");
            System.arraycopy(data, e + ENTRY_SHA, sha, i * SHA_BYTES, SHA_BYTES);
            stored += pages[i];
        }
        long total = b.getLong(OFF_STORED);
        if (total != stored) throw new SnapshotException(file + ": header says " + total + " stored pages, the chunks store " + stored);
        return new ChunkTable(ramBytes, offsets, pages, sha);
    }

    public int count() { return offsets.length; }
    public long ramBytes() { return ramBytes; }
    public long gpa(int chunk) { return (long) chunk * SnapshotFormat.CHUNK_BYTES; }
    public long offset(int chunk) { return offsets[chunk]; }
    public int pages(int chunk) { return pages[chunk]; }

    public long storedPages() {
        int n = count();
        return n == 0 ? 0 : offsets[n - 1] / SnapshotFormat.PAGE + pages[n - 1];
    }

    /** Whether {@code digest} (32 bytes) is chunk {@code chunk}'s SHA-256; compares in place, allocates nothing. */
    public boolean shaMatches(int chunk, byte[] digest) {
        return digest.length == SHA_BYTES && Arrays.equals(digest, 0, SHA_BYTES, sha, chunk * SHA_BYTES, chunk * SHA_BYTES + SHA_BYTES);
    }

    /** Chunk {@code chunk}'s SHA-256, lowercase hex (for messages). */
    public String sha256(int chunk) {
        return HexFormat.of().formatHex(sha, chunk * SHA_BYTES, chunk * SHA_BYTES + SHA_BYTES);
    }

    /** One chunk as a record (for messages, tools and tests; allocates). */
    public Chunk chunk(int chunk) {
        return new Chunk(chunk, gpa(chunk), pages[chunk], offsets[chunk], sha256(chunk));
    }

    /** One chunk: its guest-physical start, stored pages, their offset in the memory file and their SHA-256. */
    public record Chunk(int index, long gpa, int pages, long offset, String sha256) {}
}
