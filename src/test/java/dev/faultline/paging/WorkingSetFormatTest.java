package dev.faultline.paging;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorkingSetFormatTest {
    static final long P = FaultCore.PAGE;

    @Test
    void shouldStoreRunsInFirstTouchOrderAndReadThemBackExactly(@TempDir Path dir) throws Exception {
        long[] gpas = new long[10_003];
        for (int i = 0; i < 10_000; i++) gpas[i] = (100 + i) * P;   // one sequential phase: one run
        gpas[10_000] = 7 * P;
        gpas[10_001] = 3 * P;
        gpas[10_002] = 4 * P;
        WorkingSet ws = WorkingSet.inSpace(1 << 30, gpas);
        Path f = dir.resolve("ws");
        ws.write(f);
        assertEquals(32 + 3 * 16 + 32, Files.size(f), "three runs");
        assertEquals(ws, WorkingSet.read(f));
        assertEquals(1 << 30, WorkingSet.read(f).spaceBytes());
        assertEquals("rw-------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(f)));
    }

    @Test
    void shouldRefuseACorruptedTruncatedForeignOrLinkedFileInOneLine(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("ws");
        WorkingSet.inSpace(64 * P, 5 * P, 6 * P, 1 * P).write(f);
        byte[] good = Files.readAllBytes(f);
        byte[] flipped = good.clone();
        flipped[33] ^= 1;
        Files.write(f, flipped);
        assertTrue(assertThrows(PageSourceException.class, () -> WorkingSet.read(f)).getMessage().endsWith("fails its SHA-256 check (corrupted or truncated)"));
        Files.write(f, java.util.Arrays.copyOf(good, good.length - 1));
        assertTrue(assertThrows(PageSourceException.class, () -> WorkingSet.read(f)).getMessage().contains("announces 2 runs"));
        byte[] v1 = good.clone();
        v1[4] = 1;
        Files.write(f, v1);
        assertTrue(assertThrows(PageSourceException.class, () -> WorkingSet.read(f)).getMessage().contains("record the working set again"));
        Files.writeString(f, "#!/bin/sh\n".repeat(10));
        assertTrue(assertThrows(PageSourceException.class, () -> WorkingSet.read(f)).getMessage().contains("no FLWS magic"));
        Files.write(f, good);
        Path link = dir.resolve("link");
        Files.createSymbolicLink(link, f);
        String m = assertThrows(PageSourceException.class, () -> WorkingSet.read(link)).getMessage();
        assertTrue(m.contains("symbolic link"), m);
        assertTrue(assertThrows(PageSourceException.class, () -> WorkingSet.read(dir)).getMessage().contains("not a regular file"));
    }

    @Test
    void shouldRefuseRunsOutsideTheSpaceOrNamingAPageTwice() {
        assertThrows(IllegalArgumentException.class, () -> WorkingSet.inSpace(8 * P, 8 * P));
        assertThrows(IllegalArgumentException.class, () -> WorkingSet.of(P, 2 * P, P));
        byte[] b = WorkingSet.inSpace(8 * P, 1 * P, 2 * P).encode();
        // rewrite the run to start past the space and re-seal it: the decoder still refuses it
        java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(32, 100);
        reseal(b);
        assertTrue(assertThrows(PageSourceException.class, () -> WorkingSet.decode(Path.of("x"), b)).getMessage().contains("lies outside the space"));
    }

    static void reseal(byte[] b) {
        try {
            byte[] sha = java.security.MessageDigest.getInstance("SHA-256").digest(java.util.Arrays.copyOf(b, b.length - 32));
            System.arraycopy(sha, 0, b, b.length - 32, 32);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new AssertionError(e);
        }
    }
}
