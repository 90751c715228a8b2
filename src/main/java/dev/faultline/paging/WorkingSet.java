package dev.faultline.paging;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * The order in which a run first touched guest pages, to prefetch in that order on the next run.
 *
 * <p>File format (big-endian), version 1:
 * <pre>
 *   0  u32 magic "FLWS" (0x464c5753)
 *   4  u32 version (1)
 *   8  u32 page size (4096)
 *  12  u32 reserved (0)
 *  16  u64 count
 *  24  u64 gpa[count]   page-aligned guest-physical addresses, first touch first
 * </pre>
 */
public final class WorkingSet {
    public static final int MAGIC = 0x464c5753, VERSION = 1;

    private final long[] gpas;

    private WorkingSet(long[] gpas) {
        this.gpas = gpas;
    }

    /** A working set of these page addresses in this order (copied; each must be page-aligned). */
    public static WorkingSet of(long... gpas) {
        for (long g : gpas) {
            if ((g & (FaultCore.PAGE - 1)) != 0 || g < 0) throw new IllegalArgumentException("gpa 0x" + Long.toHexString(g) + " is not page-aligned");
        }
        return new WorkingSet(gpas.clone());
    }

    public int size() { return gpas.length; }
    public long gpa(int i) { return gpas[i]; }
    public long[] gpas() { return gpas.clone(); }

    public void write(Path file) throws IOException {
        try (OutputStream os = Files.newOutputStream(file); DataOutputStream out = new DataOutputStream(new BufferedOutputStream(os))) {
            out.writeInt(MAGIC);
            out.writeInt(VERSION);
            out.writeInt((int) FaultCore.PAGE);
            out.writeInt(0);
            out.writeLong(gpas.length);
            for (long g : gpas) out.writeLong(g);
        }
    }

    /**
     * Reads a working-set file.
     * @throws PageSourceException naming the file and what is wrong with it (missing, not a working
     *     set, another version or page size, truncated)
     */
    public static WorkingSet read(Path file) {
        try (InputStream is = Files.newInputStream(file); DataInputStream in = new DataInputStream(new BufferedInputStream(is))) {
            int magic = in.readInt();
            if (magic != MAGIC) throw new PageSourceException("working-set file " + file + " does not start with FLWS (magic 0x"
                    + Integer.toHexString(magic) + ")");
            int version = in.readInt();
            if (version != VERSION) throw new PageSourceException("working-set file " + file + " has version " + version + "; this build reads " + VERSION);
            int page = in.readInt();
            if (page != FaultCore.PAGE) throw new PageSourceException("working-set file " + file + " has page size " + page + ", not " + FaultCore.PAGE);
            in.readInt();
            long count = in.readLong();
            long expected = 24 + 8 * count;
            long size = Files.size(file);
            if (count < 0 || count > Integer.MAX_VALUE || size != expected) {
                throw new PageSourceException("working-set file " + file + " announces " + count + " pages (" + expected
                        + " bytes) but has " + size + " bytes");
            }
            long[] gpas = new long[(int) count];
            for (int i = 0; i < gpas.length; i++) gpas[i] = in.readLong();
            return of(gpas);
        } catch (NoSuchFileException e) {
            throw new PageSourceException("working-set file " + file + " does not exist", e);
        } catch (EOFException e) {
            throw new PageSourceException("working-set file " + file + " is truncated", e);
        } catch (IOException e) {
            throw new PageSourceException("working-set file " + file + " cannot be read: " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new PageSourceException("working-set file " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Merges per-lane first-touch records into one order by time: lane {@code i} touched
     * {@code pages[i][k]} at {@code times[i][k]} for k below {@code counts[i]}.
     */
    static WorkingSet merge(long[][] gpas, long[][] times, int[] counts) {
        int total = 0;
        for (int c : counts) total += c;
        long[][] pairs = new long[total][];
        int k = 0;
        for (int lane = 0; lane < counts.length; lane++) {
            for (int i = 0; i < counts[lane]; i++) pairs[k++] = new long[] {times[lane][i], gpas[lane][i]};
        }
        Arrays.sort(pairs, (a, b) -> Long.compare(a[0], b[0]));
        long[] out = new long[total];
        for (int i = 0; i < total; i++) out[i] = pairs[i][1];
        return new WorkingSet(out);
    }

    @Override
    public boolean equals(Object o) { return o instanceof WorkingSet w && Arrays.equals(gpas, w.gpas); }

    @Override
    public int hashCode() { return Arrays.hashCode(gpas); }

    @Override
    public String toString() { return "working set of " + gpas.length + " pages"; }
}
