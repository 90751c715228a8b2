package dev.faultline.guest;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.zip.CRC32;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Freestanding C guests (src/test/resources/guests) compiled with gcc, run through faultline's VMM on the
 * kvm backend: main's result must be in RAX when the vCPU halts and in the two reports before it,
 * and equal the value computed here in Java.
 */
class CGuestTest {
    private static final Path GUESTS = Path.of("src/test/resources/guests");
    private static final long MEM = 16L << 20;

    @TempDir Path dir;

    private GuestImage build(String name) throws Exception {
        assumeTrue(CGuest.unavailableReason().isEmpty(), () -> "skipped: " + CGuest.unavailableReason().orElse(""));
        return CGuest.build(GUESTS.resolve(name), dir);
    }

    /** Builds and runs {@code name} on {@code vcpus} vCPUs; checks the result protocol; returns RAX per vCPU. */
    private KvmHarness.Run run(String name, int vcpus) throws Exception {
        GuestImage image = build(name);
        assumeTrue(KvmHarness.unavailableReason().isEmpty(), () -> "skipped: " + KvmHarness.unavailableReason().orElse(""));
        KvmHarness.Run run = KvmHarness.run(image, MEM, vcpus, ram -> { });
        for (int v = 0; v < vcpus; v++) {
            long rax = run.reg(v, "rax");
            List<KvmHarness.Exit> exits = run.exits().get(v);
            assertEquals(List.of(KvmHarness.Exit.out(BootProtocol.PORT_REPORT, rax & 0xffffffffL),
                    KvmHarness.Exit.out(BootProtocol.PORT_REPORT, rax >>> 32), new KvmHarness.Exit("hlt", 0, 0, 0)), exits,
                    name + " vCPU " + v + ": the result reported low dword first, then HLT");
        }
        return run;
    }

    @Test
    void shouldLinkTheCrt0AtTheLoadAddressAndEnterThere() throws Exception {
        GuestImage image = build("sieve.c");
        byte[] crt0 = CGuestRuntime.crt0();
        assertEquals(BootProtocol.DEFAULT_LOAD_GPA, image.loadGpa());
        assertEquals(BootProtocol.DEFAULT_LOAD_GPA, image.entry());
        assertArrayEquals(crt0, Arrays.copyOf(image.bytes(), crt0.length));
        long mainPtr = java.nio.ByteBuffer.wrap(image.bytes(), crt0.length, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(image.loadGpa() + crt0.length + 8, mainPtr, "main follows the crt0 and its pointer (.text.startup first)");
    }

    @Test
    void shouldReturnTheSortHashInRax() throws Exception {
        long[] v = new long[2000];
        long x = 12345;
        for (int i = 0; i < v.length; i++) {
            x = x * 6364136223846793005L + 1442695040888963407L;
            v[i] = x >>> 33;
        }
        Arrays.sort(v);
        long h = 0;
        for (long e : v) h = h * 31 + e;
        assertEquals(h, run("sort.c", 1).reg(0, "rax"));
    }

    @Test
    void shouldReturnThePrimeCountAndSumInRax() throws Exception {
        boolean[] composite = new boolean[200001];
        long primes = 0, sum = 0;
        for (int i = 2; i <= 200000; i++) {
            if (composite[i]) continue;
            primes++;
            sum += i;
            for (long j = (long) i * i; j <= 200000; j += i) composite[(int) j] = true;
        }
        assertEquals(17984, primes);
        assertEquals(primes << 40 | sum, run("sieve.c", 1).reg(0, "rax"));
    }

    @Test
    void shouldReturnCrc32AndFnvOfTheGeneratedBytesInRax() throws Exception {
        byte[] data = new byte[65536];
        long s = 0x9e3779b97f4a7c15L;
        for (int i = 0; i < data.length; i++) {
            s ^= s << 13;
            s ^= s >>> 7;
            s ^= s << 17;
            data[i] = (byte) (s >>> 24);
        }
        CRC32 crc = new CRC32();
        crc.update(data);
        int fnv = 0x811c9dc5;
        for (byte b : data) fnv = (fnv ^ (b & 0xff)) * 16777619;
        assertEquals(crc.getValue() << 32 | (fnv & 0xffffffffL), run("hash.c", 1).reg(0, "rax"));
    }

    @Test
    void shouldReturnTheSumOfPageStridedTrafficOnTwoVcpusAndLeaveItInMemory() throws Exception {
        KvmHarness.Run run = run("pages.c", 2);
        for (int v = 0; v < 2; v++) {
            long base = 0x400000L + v * (4L << 20), sum = 0;
            for (long p = 0; p < 1024; p++) {
                long gpa = base + p * 4096;
                sum += (gpa ^ 0x5a5a5a5a5a5a5a5aL) + (gpa * 3 + 2);
            }
            assertEquals(sum, run.reg(v, "rax"), "vCPU " + v);
        }
        run.withRam(ram -> {
            long gpa = 0x400000L + (4L << 20) + 17 * 4096;
            assertEquals(gpa ^ 0x5a5a5a5a5a5a5a5aL, ram.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa));
            assertEquals(gpa * 3 + 2, ram.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa + 2048));
        });
    }

    @Test
    void shouldReturnTheSignedAndUnsignedArithmeticMixInRax() throws Exception {
        long acc = 0x0123456789abcdefL;
        long s = -1234567890123L;
        for (int i = 1; i <= 1000; i++) {
            long d = (i * 7919 % 2003) - 1001;
            if (d == 0) d = 1;
            long q = s / d, r = s % d;
            long uq = Long.divideUnsigned(acc, i | 1), ur = Long.remainderUnsigned(acc, i | 1);
            int narrow = (int) acc;
            long un = s & 0xffffffffL;
            long sx = (byte) (acc >>> 8);
            long zx = (s >> 3) & 0xffff;
            acc = acc * 6364136223846793005L + q + uq + ur + narrow + un + sx + zx;
            acc ^= acc >>> 29;
            acc = Long.rotateLeft(acc, 7);
            s = (acc >>> 1) - r * 3;
            if (s < 0) acc += 1;
            if ((int) acc < 0) acc += 2;
            if (un > 0x80000000L) acc += 4;
            if (acc < s) acc ^= 8;
        }
        assertEquals(acc, run("arith.c", 1).reg(0, "rax"));
    }

    @Test
    void shouldKeepTheCommittedLinkerScriptEqualToTheGeneratedOne() throws Exception {
        assertEquals(CGuestRuntime.linkerScript(), Files.readString(Path.of("scripts/c-guest.ld")),
                "scripts/c-guest.ld is stale: regenerate it from CGuestRuntime.linkerScript()");
    }

    @Test
    void shouldBuildTheSameImageWithTheUserScriptAsWithTheTestHelper() throws Exception {
        GuestImage helper = build("hash.c");
        Path out = dir.resolve("script-hash.bin");
        String log = Tools.exec(List.of("bash", "scripts/build-c-guest.sh", GUESTS.resolve("hash.c").toString(), out.toString()));
        assertTrue(log.contains("--load-gpa 0x200000 --entry 0x200000"), log);
        assertArrayEquals(helper.bytes(), Files.readAllBytes(out));
    }
}
