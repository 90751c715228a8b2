package dev.faultline.vmm;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * How much memory this host can give a guest before anything is mapped: the kernel's MemAvailable
 * and the memory limit of the cgroup this process runs in (v2 {@code memory.max} less
 * {@code memory.current}, or v1 {@code memory.limit_in_bytes} less {@code memory.usage_in_bytes}, the
 * tightest along the path to the root). Guest RAM is mapped lazily, but a guest may touch all of it,
 * and a process killed by the OOM killer says nothing; so a request that does not fit is refused up
 * front with both figures.
 *
 * <p>Read from /proc and /sys each time (no caching: a long-running service sees the host change).
 * A file that is missing or unreadable counts as "no limit known" from that source.
 */
public final class HostLimits {
    private final Path procMeminfo, cgroupRoot, procSelfCgroup;

    /** The limits of this host, read from the real /proc and /sys/fs/cgroup. */
    public static HostLimits host() {
        return new HostLimits(Path.of("/proc/meminfo"), Path.of("/sys/fs/cgroup"), Path.of("/proc/self/cgroup"));
    }

    /** Limits read from other files (tests). */
    public HostLimits(Path procMeminfo, Path cgroupRoot, Path procSelfCgroup) {
        this.procMeminfo = procMeminfo;
        this.cgroupRoot = cgroupRoot;
        this.procSelfCgroup = procSelfCgroup;
    }

    /** What limits memory, and how much is left under each limit that is known. */
    public record Memory(long memAvailable, long cgroupLeft, String cgroupPath) {
        /** The most a guest can be given: the smaller of the two known figures (Long.MAX_VALUE: none known). */
        public long available() {
            return Math.min(memAvailable, cgroupLeft);
        }

        /** "MemAvailable 23.1 GiB, cgroup /a/b 1.9 GiB left of its limit". */
        public String describe() {
            List<String> parts = new ArrayList<>();
            if (memAvailable != Long.MAX_VALUE) parts.add("MemAvailable " + gib(memAvailable));
            if (cgroupLeft != Long.MAX_VALUE) parts.add("cgroup " + cgroupPath + " has " + gib(cgroupLeft) + " left below its memory limit");
            return parts.isEmpty() ? "no memory limit is known" : String.join(", ", parts);
        }
    }

    public Memory memory() {
        long avail = memAvailable();
        long left = Long.MAX_VALUE;
        String where = "";
        for (String tagged : cgroupPaths()) {
            Limit l = cgroupLeft(tagged);
            if (l.left() < left) {
                left = l.left();
                where = l.path();
            }
        }
        return new Memory(avail, left, where);
    }

    /**
     * Refuses {@code bytes} of guest RAM (what the user asked for, worded by {@code what}: "--mem 8G",
     * "the source's HELLO (64 GiB)") when this host cannot give it.
     * @throws IllegalArgumentException one line naming the request and both limits
     */
    public void requireGuestRam(long bytes, String what) {
        Memory m = memory();
        if (bytes > m.available()) {
            throw new IllegalArgumentException(what + " asks for " + gib(bytes) + " of guest RAM, more than this host can give: " + m.describe());
        }
    }

    private long memAvailable() {
        try {
            for (String line : Files.readAllLines(procMeminfo, StandardCharsets.US_ASCII)) {
                if (line.startsWith("MemAvailable:")) {
                    String[] f = line.substring("MemAvailable:".length()).trim().split("\\s+");
                    return Long.parseLong(f[0]) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            // no /proc/meminfo (or an odd one): no figure from it
        }
        return Long.MAX_VALUE;
    }

    /** The cgroup paths of this process that hold a memory controller: the v2 path, then the v1 memory one. */
    private List<String> cgroupPaths() {
        List<String> paths = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(procSelfCgroup, StandardCharsets.US_ASCII)) {
                String[] f = line.split(":", 3);
                if (f.length != 3) continue;
                if (f[0].equals("0") && f[1].isEmpty()) paths.add("v2:" + f[2]);
                else if (List.of(f[1].split(",")).contains("memory")) paths.add("v1:" + f[2]);
            }
        } catch (IOException | RuntimeException e) {
            // not on Linux, or /proc hidden: no cgroup figure
        }
        return paths;
    }

    private record Limit(long left, String path) {}

    /** The least memory left under any limit from the cgroup {@code tagged} ("v2:/a/b") up to its root, and where. */
    private Limit cgroupLeft(String tagged) {
        boolean v2 = tagged.startsWith("v2:");
        String rel = tagged.substring(3);
        Path base = v2 ? cgroupRoot : cgroupRoot.resolve("memory");
        long left = Long.MAX_VALUE;
        String where = "";
        Path p = Path.of("/").resolve(rel).normalize();
        while (p != null) {
            Path dir = base.resolve(Path.of("/").relativize(p).toString());
            long limit = number(dir.resolve(v2 ? "memory.max" : "memory.limit_in_bytes"));
            long used = number(dir.resolve(v2 ? "memory.current" : "memory.usage_in_bytes"));
            // v1 says "no limit" with a huge page-aligned number near Long.MAX_VALUE
            long l = limit < (1L << 60) ? Math.max(0, limit - (used == Long.MAX_VALUE ? 0 : used)) : Long.MAX_VALUE;
            if (l < left) {
                left = l;
                where = p.toString();
            }
            p = p.getParent();
        }
        return new Limit(left, where);
    }

    /** A number from a one-line file, "max" or anything unreadable: Long.MAX_VALUE. */
    private static long number(Path file) {
        try {
            String s = Files.readString(file, StandardCharsets.US_ASCII).trim();
            return s.equals("max") ? Long.MAX_VALUE : Long.parseLong(s);
        } catch (IOException | RuntimeException e) {
            return Long.MAX_VALUE;
        }
    }

    /** "1.5 GiB", "64 MiB". */
    public static String gib(long bytes) {
        if (bytes >= (1L << 30)) return String.format("%.1f GiB", bytes / (double) (1L << 30));
        return String.format("%d MiB", bytes >> 20);
    }
}
