package dev.faultline.vmm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HostLimitsTest {
    @TempDir
    Path dir;

    private HostLimits limits(String meminfo, String cgroup) throws IOException {
        Files.writeString(dir.resolve("meminfo"), meminfo);
        Files.writeString(dir.resolve("cgroup"), cgroup);
        return new HostLimits(dir.resolve("meminfo"), dir.resolve("sys"), dir.resolve("cgroup"));
    }

    private void write(String rel, String value) throws IOException {
        Path p = dir.resolve("sys").resolve(rel);
        Files.createDirectories(p.getParent());
        Files.writeString(p, value + "\n");
    }

    @Test
    void shouldTakeTheTightestLimitAlongACgroupV2Path() throws IOException {
        HostLimits h = limits("MemTotal: 100 kB\nMemAvailable:   8388608 kB\n", "0::/a/b\n");
        write("a/memory.max", "3221225472");
        write("a/memory.current", "1073741824");
        write("a/b/memory.max", "max");
        write("a/b/memory.current", "536870912");
        HostLimits.Memory m = h.memory();
        assertEquals(8L << 30, m.memAvailable());
        assertEquals(2L << 30, m.cgroupLeft());
        assertEquals("/a", m.cgroupPath());
        assertEquals(2L << 30, m.available());
    }

    @Test
    void shouldReadACgroupV1MemoryControllerAndIgnoreItsNoLimitValue() throws IOException {
        HostLimits h = limits("MemAvailable: 4194304 kB\n", "4:memory:/x\n3:cpuset:/\n");
        write("memory/memory.limit_in_bytes", "9223372036854771712");
        write("memory/x/memory.limit_in_bytes", "1073741824");
        write("memory/x/memory.usage_in_bytes", "268435456");
        assertEquals(768L << 20, h.memory().available());
    }

    @Test
    void shouldRefuseGuestRamThatDoesNotFitNamingTheRequestAndTheLimits() throws IOException {
        HostLimits h = limits("MemAvailable: 2097152 kB\n", "0::/\n");
        h.requireGuestRam(1L << 30, "--mem 1G");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> h.requireGuestRam(8L << 30, "--mem 8G"));
        assertEquals("--mem 8G asks for 8.0 GiB of guest RAM, more than this host can give: MemAvailable 2.0 GiB", e.getMessage());
    }

    @Test
    void shouldKnowNoLimitWhereTheFilesAreMissing() {
        HostLimits h = new HostLimits(dir.resolve("none"), dir.resolve("none"), dir.resolve("none"));
        assertEquals(Long.MAX_VALUE, h.memory().available());
        assertTrue(h.memory().describe().contains("no memory limit"));
    }
}
