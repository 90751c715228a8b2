package dev.faultline.guest;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GuestImageTest {
    private static final byte[] CODE = {(byte) 0xf4, (byte) 0xeb, (byte) 0xfd}; // hlt; jmp back

    @TempDir Path dir;

    @Test
    void shouldRefuseAnImageLoadedBelowOneMebibyteNamingTheAddress() {
        var e = assertThrows(GuestImageException.class, () -> GuestImage.of(CODE, 0x80000, 0x80000));
        assertEquals("image: load address 0x80000 is below 0x100000 (1 MiB); the boot protocol keeps [0, 1 MiB) for page tables,"
                + " GDT and stacks", e.getMessage());
    }

    @Test
    void shouldRefuseAnEntryOutsideTheImageNamingBoth() {
        var e = assertThrows(GuestImageException.class, () -> GuestImage.of(CODE, 0x200000, 0x200003));
        assertEquals("image: entry 0x200003 lies outside the image [0x200000, 0x200003)", e.getMessage());
        assertThrows(GuestImageException.class, () -> GuestImage.of(CODE, 0x200000, 0x1fffff));
    }

    @Test
    void shouldRefuseAnEmptyImage() {
        assertEquals("image is empty", assertThrows(GuestImageException.class, () -> GuestImage.of(new byte[0], 0x200000, 0x200000)).getMessage());
    }

    @Test
    void shouldRefuseAnImageLargerThanRam() {
        GuestImage big = GuestImage.of(new byte[3 << 20], 0x100000, 0x100000);
        var e = assertThrows(GuestImageException.class, () -> big.checkFits(2 << 20));
        assertEquals("image of 3145728 bytes is larger than guest RAM of 2097152 bytes", e.getMessage());
    }

    @Test
    void shouldRefuseAnImageThatExtendsPastTheEndOfRam() {
        GuestImage img = GuestImage.of(new byte[0x2000], 0x3ff000, 0x3ff000);
        var e = assertThrows(GuestImageException.class, () -> img.checkFits(4 << 20));
        assertEquals("image [0x3ff000, 0x401000) extends past the end of guest RAM at 0x400000; load it lower or give the guest"
                + " more memory", e.getMessage());
        img.checkFits((4 << 20) + 0x1000);
    }

    @Test
    void shouldRefuseAMissingImageFileWithItsPath() {
        Path missing = dir.resolve("nope.bin");
        var e = assertThrows(GuestImageException.class, () -> GuestImage.fromFile(missing, 0x200000, 0x200000));
        assertEquals("image file " + missing + " does not exist", e.getMessage());
    }

    @Test
    void shouldRefuseADirectoryAndAnEmptyFileAsImages() throws Exception {
        assertEquals("image file " + dir + " is a directory, not a flat binary",
                assertThrows(GuestImageException.class, () -> GuestImage.fromFile(dir, 0x200000, 0x200000)).getMessage());
        Path empty = Files.createFile(dir.resolve("empty.bin"));
        assertEquals("image file " + empty + " is empty",
                assertThrows(GuestImageException.class, () -> GuestImage.fromFile(empty, 0x200000, 0x200000)).getMessage());
    }

    @Test
    void shouldApplyTheSameRulesToImageFiles() throws Exception {
        Path f = Files.write(dir.resolve("g.bin"), CODE);
        var e = assertThrows(GuestImageException.class, () -> GuestImage.fromFile(f, 0x1000, 0x1000));
        assertEquals("image file " + f + ": load address 0x1000 is below 0x100000 (1 MiB); the boot protocol keeps [0, 1 MiB)"
                + " for page tables, GDT and stacks", e.getMessage());
        GuestImage ok = GuestImage.fromFile(f, 0x200000, 0x200001);
        assertArrayEquals(CODE, ok.bytes());
        assertEquals(0x200001, ok.entry());
    }

    @Test
    void shouldWriteTheImageAtItsLoadAddressNextToTheSystemTables() {
        long mem = 4 << 20;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ram = arena.allocate(mem, 4096);
            GuestImage.of(CODE, 0x200000, 0x200000).installWithSystemTables(ram, mem);
            assertArrayEquals(CODE, ram.asSlice(0x200000, 3).toArray(ValueLayout.JAVA_BYTE));
            assertEquals(0, ram.get(ValueLayout.JAVA_BYTE, 0x200003));
            // PML4[0] points at the PDPT, present and writable: the system tables are there too.
            assertEquals(BootProtocol.PDPT_GPA | 0x23, ram.get(ValueLayout.JAVA_LONG, BootProtocol.PML4_GPA));
        }
    }

    @Test
    void shouldLeaveRamUntouchedWhenTheImageDoesNotFit() {
        long mem = 2 << 20;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ram = arena.allocate(mem, 4096);
            GuestImage img = GuestImage.of(new byte[0x1000], 0x200000, 0x200000);
            assertThrows(GuestImageException.class, () -> img.installWithSystemTables(ram, mem));
            assertEquals(0, ram.get(ValueLayout.JAVA_LONG, BootProtocol.PML4_GPA));
        }
    }
}
