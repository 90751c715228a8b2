package dev.faultline.snapshot;

import dev.faultline.guest.BootProtocol;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.VcpuState;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.HexFormat;
import java.util.List;

/**
 * Writes a snapshot directory from paused guest RAM and vCPU states. Zero pages are not stored.
 * The description is written last and atomically (temporary file, then rename), so a directory whose
 * writing was interrupted has no {@value SnapshotFormat#DESCRIPTION_FILE} and is refused as incomplete.
 */
public final class SnapshotWriter {
    private SnapshotWriter() {}

    private static final MemorySegment ZERO_PAGE = MemorySegment.ofArray(new byte[SnapshotFormat.PAGE]);

    /** What was written and how long it took. */
    public record Written(Path dir, SnapshotDescription description, long nanos) {}

    /**
     * Writes RAM ({@code ram}: offset = gpa, the whole of guest RAM) and the vCPUs' states into
     * {@code dir} (created; it must not already hold a snapshot).
     */
    public static Written write(Path dir, MemorySegment ram, String backend, List<VcpuState> vcpus, List<Long> guestExits,
                                SnapshotDescription.Point point, SnapshotDescription.Guest guest) {
        long t0 = System.nanoTime();
        long ramBytes = ram.byteSize();
        try {
            Files.createDirectories(dir);
            if (Files.exists(dir.resolve(SnapshotFormat.DESCRIPTION_FILE))) {
                throw new SnapshotException(dir + " already holds a snapshot (" + SnapshotFormat.DESCRIPTION_FILE + "); choose another directory");
            }
            MessageDigest md = sha256();
            PageMap.Builder map = PageMap.builder(ramBytes);
            ChunkTable.Builder chunks = new ChunkTable.Builder(ramBytes);
            long stored = 0;
            try (FileChannel out = FileChannel.open(dir.resolve(SnapshotFormat.MEMORY_FILE), StandardOpenOption.CREATE,
                    StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
                int chunkCount = SnapshotFormat.chunkCount(ramBytes);
                for (int c = 0; c < chunkCount; c++) {
                    long from = (long) c * SnapshotFormat.CHUNK_BYTES, to = Math.min(ramBytes, from + SnapshotFormat.CHUNK_BYTES);
                    int pages = 0;
                    md.reset();
                    long runStart = -1;
                    for (long gpa = from; gpa <= to; gpa += SnapshotFormat.PAGE) {
                        boolean nonZero = gpa < to && MemorySegment.mismatch(ram, gpa, gpa + SnapshotFormat.PAGE, ZERO_PAGE, 0, SnapshotFormat.PAGE) != -1;
                        if (nonZero) {
                            map.markStored(gpa / SnapshotFormat.PAGE);
                            pages++;
                            if (runStart < 0) runStart = gpa;
                        } else if (runStart >= 0) {
                            MemorySegment run = ram.asSlice(runStart, gpa - runStart);
                            md.update(run.asByteBuffer());
                            writeFully(out, run);
                            runStart = -1;
                        }
                    }
                    stored += pages;
                    chunks.add(pages, md.digest());
                }
            }
            PageMap pageMap = map.build();
            byte[] mapBytes = pageMap.toBytes();
            Files.write(dir.resolve(SnapshotFormat.PAGE_MAP_FILE), mapBytes);
            byte[] tableBytes = chunks.build().toBytes();
            Files.write(dir.resolve(SnapshotFormat.CHUNK_TABLE_FILE), tableBytes);
            long pagesTotal = ramBytes / SnapshotFormat.PAGE;
            SnapshotDescription d = new SnapshotDescription(SnapshotFormat.VERSION, backend, Instant.now().toString(), ramBytes,
                    memslots(ramBytes), point, guest, vcpus, guestExits,
                    new SnapshotDescription.MemoryFile(SnapshotFormat.MEMORY_FILE, stored * SnapshotFormat.PAGE, stored, pagesTotal - stored,
                            GuestRam.sha256(ram)),
                    new SnapshotDescription.IndexFile(SnapshotFormat.PAGE_MAP_FILE, mapBytes.length, hex(sha256().digest(mapBytes))),
                    new SnapshotDescription.IndexFile(SnapshotFormat.CHUNK_TABLE_FILE, tableBytes.length, hex(sha256().digest(tableBytes))),
                    null);
            writeDescription(dir, d);
            return new Written(dir, d, System.nanoTime() - t0);
        } catch (IOException e) {
            throw new SnapshotException("cannot write the snapshot into " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Replaces the description atomically (e.g. to add the original run's outcome). */
    public static void writeDescription(Path dir, SnapshotDescription d) {
        Path tmp = dir.resolve(SnapshotFormat.DESCRIPTION_FILE + ".tmp");
        try {
            Files.write(tmp, DescriptionJson.toBytes(d));
            Files.move(tmp, dir.resolve(SnapshotFormat.DESCRIPTION_FILE), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new SnapshotException("cannot write " + dir.resolve(SnapshotFormat.DESCRIPTION_FILE) + ": " + e.getMessage(), e);
        }
    }

    /** The memslots a restore installs RAM as ({@link GuestRam#install}): what a snapshot must describe. */
    public static List<SnapshotDescription.Memslot> memslots(long ramBytes) {
        long low = BootProtocol.IMAGE_MIN_GPA;
        return List.of(new SnapshotDescription.Memslot(BootProtocol.SLOT_LOW, 0, low, 0),
                new SnapshotDescription.Memslot(BootProtocol.SLOT_MAIN, low, ramBytes - low, 0));
    }

    private static void writeFully(FileChannel out, MemorySegment run) throws IOException {
        var buf = run.asByteBuffer();
        while (buf.hasRemaining()) out.write(buf);
    }

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 missing from the JDK", e);
        }
    }

    static String hex(byte[] b) {
        return HexFormat.of().formatHex(b);
    }
}
