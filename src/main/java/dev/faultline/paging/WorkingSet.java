package dev.faultline.paging;

import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.FileStatus;
import dev.faultline.sys.Libc;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;

/**
 * The pages a run first touched, in the order it touched them, to prefetch on the next run
 * (REAP-style record and replay). Addresses are in the paged space the recording core served: guest
 * physical for a restore, file offsets for a page server; {@link #spaceBytes()} is that space's end,
 * so a set is never replayed against a space of another size.
 *
 * <p>File format (little-endian), version 2: runs of consecutive pages in first-touch order, then a
 * SHA-256 of everything before it.
 * <pre>
 *   0  "FLWS"                 4  u32 version (2)        8  u32 page size (4096)   12  u32 run count R
 *  16  u64 space bytes       24  u64 pages (sum of the runs)
 *  32  R runs of 16 bytes: u64 first page index (address / 4096) | u32 pages | u32 0
 *  32 + 16 R  SHA-256 of bytes [0, 32 + 16 R)
 * </pre>
 * A sequential phase of 10,000 pages is one run (16 bytes) where version 1 stored 80,000 bytes.
 * Reading treats the file as hostile: opened without following a symbolic link, fstat'ed (a regular
 * file of a length the header accounts for, at most {@link #MAX_RUNS} runs), read in bounded
 * amounts, its checksum checked before any run is believed, every run inside the space, no page twice.
 */
public final class WorkingSet {
    public static final int VERSION = 2;
    private static final byte[] MAGIC = {'F', 'L', 'W', 'S'};
    static final int HEADER = 32, RUN = 16, SHA = 32;
    /** Most runs a file may hold (64 MiB of runs). */
    public static final int MAX_RUNS = 4 << 20;

    private final long[] gpas;
    private final long spaceBytes;

    private WorkingSet(long[] gpas, long spaceBytes) {
        this.gpas = gpas;
        this.spaceBytes = spaceBytes;
    }

    /** A working set of these page addresses in this order (copied; each page-aligned, none twice), in a space just large enough. */
    public static WorkingSet of(long... gpas) {
        long end = 0;
        for (long g : gpas) end = Math.max(end, g + FaultCore.PAGE);
        return inSpace(end, gpas);
    }

    /** As {@link #of(long...)} in a space of {@code spaceBytes}: every address below it. */
    public static WorkingSet inSpace(long spaceBytes, long... gpas) {
        if (spaceBytes < 0 || (spaceBytes & (FaultCore.PAGE - 1)) != 0) throw new IllegalArgumentException("space of " + spaceBytes + " bytes is not whole pages");
        for (long g : gpas) {
            if ((g & (FaultCore.PAGE - 1)) != 0 || g < 0) throw new IllegalArgumentException("address 0x" + Long.toHexString(g) + " is not page-aligned");
            if (g >= spaceBytes) throw new IllegalArgumentException("address 0x" + Long.toHexString(g) + " lies past the space's end 0x" + Long.toHexString(spaceBytes));
        }
        long[] sorted = gpas.clone();
        Arrays.sort(sorted);
        for (int i = 1; i < sorted.length; i++) {
            if (sorted[i] == sorted[i - 1]) throw new IllegalArgumentException("address 0x" + Long.toHexString(sorted[i]) + " appears twice");
        }
        return new WorkingSet(gpas.clone(), spaceBytes);
    }

    public int size() { return gpas.length; }
    public long gpa(int i) { return gpas[i]; }
    public long[] gpas() { return gpas.clone(); }
    /** The end of the paged space the addresses lie in (RAM bytes for a restore, region bytes for a page server). */
    public long spaceBytes() { return spaceBytes; }

    /** Runs of consecutive pages in order: {first page index, pages} each. */
    long[][] runs() {
        long[][] runs = new long[gpas.length][];
        int r = 0;
        for (int i = 0; i < gpas.length; ) {
            long first = gpas[i] >>> FaultCore.PAGE_SHIFT;
            int n = 1;
            while (i + n < gpas.length && gpas[i + n] == gpas[i] + ((long) n << FaultCore.PAGE_SHIFT) && n < Integer.MAX_VALUE) n++;
            runs[r++] = new long[] {first, n};
            i += n;
        }
        return Arrays.copyOf(runs, r);
    }

    /** The file's bytes (format above). */
    public byte[] encode() {
        long[][] runs = runs();
        if (runs.length > MAX_RUNS) throw new IllegalStateException("a working set of " + runs.length + " runs is more than a file holds (" + MAX_RUNS + ")");
        ByteBuffer b = ByteBuffer.allocate(HEADER + RUN * runs.length + SHA).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC).putInt(VERSION).putInt((int) FaultCore.PAGE).putInt(runs.length).putLong(spaceBytes).putLong(gpas.length);
        for (long[] r : runs) b.putLong(r[0]).putInt((int) r[1]).putInt(0);
        b.put(sha256(b.array(), b.position()));
        return b.array();
    }

    /** Writes the file atomically: a new file beside it (never an existing one, never through a link), mode 0600, then renamed over {@code file}. */
    public void write(Path file) throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Path tmp = dir.resolve("." + file.getFileName() + "." + ProcessHandle.current().pid() + "." + System.nanoTime() + ".tmp");
        try {
            try (OutputStream out = Files.newOutputStream(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                Files.setPosixFilePermissions(tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rw-------"));
                out.write(encode());
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /**
     * Reads a working-set file, trusting nothing in it until checked (see the class comment).
     * @throws PageSourceException one line naming the file and what is wrong with it, never its contents
     */
    public static WorkingSet read(Path file) {
        FileStatus st;
        try {
            st = FileStatus.openReadOnly(file);
        } catch (ErrnoException e) {
            throw new PageSourceException("working-set file " + file + " cannot be opened: " + e.getMessage(), e);
        }
        try {
            if (!st.isRegularFile()) throw refused(file, "is not a regular file");
            long max = HEADER + (long) RUN * MAX_RUNS + SHA;
            if (st.size() < HEADER + SHA || st.size() > max) {
                throw refused(file, "has " + st.size() + " bytes; a working-set file has " + (HEADER + SHA) + " to " + max);
            }
            byte[] bytes = readFully(file, st.fd(), (int) st.size());
            return decode(file, bytes);
        } finally {
            Libc.close(st.fd());
        }
    }

    private static byte[] readFully(Path file, int fd, int size) {
        MemorySegment buf = java.lang.foreign.Arena.ofAuto().allocate(size, 8);
        long done = 0;
        while (done < size) {
            long n = Libc.pread(fd, buf.address() + done, size - done, done);
            if (n == -1 && Libc.lastErrno() == dev.faultline.sys.Errno.EINTR) continue;
            if (n == -1) throw refused(file, "cannot be read: " + dev.faultline.sys.Errno.describe(Libc.lastErrno()));
            if (n == 0) throw refused(file, "shrank while it was read");
            done += n;
        }
        return buf.toArray(ValueLayout.JAVA_BYTE);
    }

    static WorkingSet decode(Path file, byte[] bytes) {
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        byte[] magic = new byte[4];
        b.get(magic);
        if (!Arrays.equals(magic, MAGIC)) throw refused(file, "is not a working-set file (no FLWS magic)");
        int version = b.getInt();
        if (version != VERSION) {
            throw refused(file, "has format version " + Integer.toUnsignedString(version) + "; this build reads version " + VERSION
                    + (version == 1 ? " (record the working set again)" : ""));
        }
        int page = b.getInt();
        if (page != FaultCore.PAGE) throw refused(file, "has page size " + Integer.toUnsignedString(page) + ", not " + FaultCore.PAGE);
        int runs = b.getInt();
        if (runs < 0 || runs > MAX_RUNS || bytes.length != HEADER + (long) RUN * runs + SHA) {
            throw refused(file, "announces " + Integer.toUnsignedString(runs) + " runs but has " + bytes.length + " bytes");
        }
        byte[] want = sha256(bytes, HEADER + RUN * runs);
        if (!Arrays.equals(want, Arrays.copyOfRange(bytes, HEADER + RUN * runs, bytes.length))) {
            throw refused(file, "fails its SHA-256 check (corrupted or truncated)");
        }
        long space = b.getLong(), pages = b.getLong();
        if (space < 0 || (space & (FaultCore.PAGE - 1)) != 0) throw refused(file, "names a space of " + Long.toUnsignedString(space) + " bytes, not whole pages");
        long spacePages = space >>> FaultCore.PAGE_SHIFT;
        if (pages < 0 || pages > spacePages || pages > Integer.MAX_VALUE - 8) {
            throw refused(file, "announces " + Long.toUnsignedString(pages) + " pages in a space of " + spacePages);
        }
        long[][] r = new long[runs][];
        long sum = 0;
        for (int i = 0; i < runs; i++) {
            long first = b.getLong();
            long n = Integer.toUnsignedLong(b.getInt());
            b.getInt();
            if (n == 0 || first < 0 || first > spacePages || n > spacePages - first) {
                throw refused(file, "run " + i + " (" + n + " pages from page " + Long.toUnsignedString(first) + ") lies outside the space of " + spacePages + " pages");
            }
            sum += n;
            r[i] = new long[] {first, n};
        }
        if (sum != pages) throw refused(file, "has runs of " + sum + " pages, its header says " + pages);
        long[][] sorted = r.clone();
        Arrays.sort(sorted, (x, y) -> Long.compare(x[0], y[0]));
        for (int i = 1; i < sorted.length; i++) {
            if (sorted[i][0] < sorted[i - 1][0] + sorted[i - 1][1]) throw refused(file, "names page " + sorted[i][0] + " twice");
        }
        long[] gpas = new long[(int) pages];
        int k = 0;
        for (long[] run : r) for (long p = 0; p < run[1]; p++) gpas[k++] = (run[0] + p) << FaultCore.PAGE_SHIFT;
        return new WorkingSet(gpas, space);
    }

    private static PageSourceException refused(Path file, String why) {
        return new PageSourceException("working-set file " + file + " " + why);
    }

    private static byte[] sha256(byte[] data, int len) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(data, 0, len);
            return md.digest();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }

    /**
     * Merges per-lane first-touch records into one order by time: lane {@code i} touched
     * {@code pages[i][k]} at {@code times[i][k]} for k below {@code counts[i]}; in a space of {@code spaceBytes}.
     */
    static WorkingSet merge(long[][] gpas, long[][] times, int[] counts, long spaceBytes) {
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
        return new WorkingSet(out, spaceBytes);
    }

    @Override
    public boolean equals(Object o) { return o instanceof WorkingSet w && Arrays.equals(gpas, w.gpas) && spaceBytes == w.spaceBytes; }

    @Override
    public int hashCode() { return Arrays.hashCode(gpas) * 31 + Long.hashCode(spaceBytes); }

    @Override
    public String toString() { return "working set of " + gpas.length + " pages"; }
}
