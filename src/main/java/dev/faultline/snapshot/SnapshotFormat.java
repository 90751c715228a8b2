package dev.faultline.snapshot;

/**
 * The snapshot directory (docs/snapshot.md draws it):
 * <ul>
 *   <li>{@value #DESCRIPTION_FILE}: what the snapshot is (format version, backend, RAM, memslots,
 *       every vCPU's registers, the guest, the original run, and the length and SHA-256 of the two index files);</li>
 *   <li>{@value #PAGE_MAP_FILE}: one bit per page, stored or zero ({@link PageMap});</li>
 *   <li>{@value #CHUNK_TABLE_FILE}: per chunk its offset in the memory file, stored pages and SHA-256 ({@link ChunkTable});</li>
 *   <li>{@value #MEMORY_FILE}: the stored (non-zero) pages, packed in guest-physical order.</li>
 * </ul>
 * Memory is checked per {@value #CHUNK_BYTES}-byte chunk of guest-physical memory: the chunk's
 * SHA-256 covers its stored pages as they lie in the memory file; the page map is checked as a whole.
 */
public final class SnapshotFormat {
    private SnapshotFormat() {}

    public static final String FORMAT = "faultline-snapshot";
    /** 2: the chunk table moved from the description into {@value #CHUNK_TABLE_FILE}. */
    public static final int VERSION = 2;
    public static final String DESCRIPTION_FILE = "snapshot.json";
    public static final String PAGE_MAP_FILE = "pages.map";
    public static final String CHUNK_TABLE_FILE = "chunks.bin";
    public static final String MEMORY_FILE = "memory.bin";

    public static final int PAGE = 4096;
    public static final int CHUNK_BYTES = 1 << 20;
    public static final int PAGES_PER_CHUNK = CHUNK_BYTES / PAGE;

    public static int chunkCount(long ramBytes) {
        return (int) ((ramBytes + CHUNK_BYTES - 1) / CHUNK_BYTES);
    }
}
