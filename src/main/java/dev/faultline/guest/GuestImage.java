package dev.faultline.guest;

import static dev.faultline.guest.BootProtocol.IMAGE_MIN_GPA;
import static dev.faultline.guest.BootProtocol.MAX_RAM;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * A flat guest image: bytes copied to guest-physical {@link #loadGpa()}, entered at {@link #entry()}.
 * The boot protocol's rules (docs/boot-protocol.md) are checked when the image is made (loaded at or
 * above 1 MiB, entry inside the image) and when it meets a RAM size ({@link #checkFits(long)}: the
 * whole image inside RAM). Immutable.
 */
public final class GuestImage {
    private final byte[] bytes;
    private final long loadGpa;
    private final long entry;

    private GuestImage(byte[] bytes, long loadGpa, long entry) {
        this.bytes = bytes;
        this.loadGpa = loadGpa;
        this.entry = entry;
    }

    /**
     * An image of {@code bytes} (copied) to load at {@code loadGpa} and enter at {@code entry}.
     * @throws GuestImageException when the image is empty, loads below 1 MiB, does not fit the
     *         identity-mapped address space, or is entered outside itself
     */
    public static GuestImage of(byte[] bytes, long loadGpa, long entry) {
        return checked(bytes.clone(), loadGpa, entry, "image");
    }

    /**
     * Reads a flat binary file (for example {@code objcopy -O binary} output) as an image.
     * @throws GuestImageException when the file is missing or unreadable, or the image breaks a rule of {@link #of}
     */
    public static GuestImage fromFile(Path file, long loadGpa, long entry) {
        if (Files.isDirectory(file)) throw new GuestImageException("image file " + file + " is a directory, not a flat binary");
        byte[] data;
        try {
            long size = Files.size(file);
            if (size > MAX_RAM) {
                throw new GuestImageException("image file " + file + " has " + size + " bytes, more than the largest guest RAM ("
                        + (MAX_RAM >> 30) + " GiB)");
            }
            data = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new GuestImageException("image file " + file + " does not exist", e);
        } catch (IOException | OutOfMemoryError e) {
            throw new GuestImageException("cannot read image file " + file + ": " + e.getMessage(), e);
        }
        return checked(data, loadGpa, entry, "image file " + file);
    }

    private static GuestImage checked(byte[] bytes, long loadGpa, long entry, String what) {
        if (bytes.length == 0) throw new GuestImageException(what + " is empty");
        if (loadGpa < IMAGE_MIN_GPA) {
            throw new GuestImageException(what + ": load address " + hex(loadGpa) + " is below " + hex(IMAGE_MIN_GPA)
                    + " (1 MiB); the boot protocol keeps [0, 1 MiB) for page tables, GDT and stacks");
        }
        long end = loadGpa + bytes.length;
        if (loadGpa >= MAX_RAM || end > MAX_RAM) {
            throw new GuestImageException(what + ": [" + hex(loadGpa) + ", " + hex(end) + ") lies beyond the largest guest RAM ("
                    + (MAX_RAM >> 30) + " GiB)");
        }
        if (entry < loadGpa || entry >= end) {
            throw new GuestImageException(what + ": entry " + hex(entry) + " lies outside the image [" + hex(loadGpa) + ", "
                    + hex(end) + ")");
        }
        return new GuestImage(bytes, loadGpa, entry);
    }

    /** A copy of the image's bytes. */
    public byte[] bytes() { return bytes.clone(); }

    public int size() { return bytes.length; }

    public long loadGpa() { return loadGpa; }

    public long entry() { return entry; }

    /** First guest-physical address after the image. */
    public long end() { return loadGpa + bytes.length; }

    /**
     * Checks that the image lies inside guest RAM of {@code ramSize} bytes.
     * @throws GuestImageException naming the image's range and the RAM size when it does not
     */
    public void checkFits(long ramSize) {
        if (bytes.length > ramSize) {
            throw new GuestImageException("image of " + bytes.length + " bytes is larger than guest RAM of " + ramSize + " bytes");
        }
        if (end() > ramSize) {
            throw new GuestImageException("image [" + hex(loadGpa) + ", " + hex(end()) + ") extends past the end of guest RAM at "
                    + hex(ramSize) + "; load it lower or give the guest more memory");
        }
    }

    /**
     * Copies the image into {@code ram}, a segment in which offset = guest-physical address, of at
     * least {@code ramSize} bytes.
     * @throws GuestImageException when the image does not fit RAM
     */
    public void writeTo(MemorySegment ram, long ramSize) {
        checkFits(ramSize);
        if (ram.byteSize() < ramSize) {
            throw new IllegalArgumentException("RAM segment of " + ram.byteSize() + " bytes is smaller than the RAM size " + ramSize);
        }
        MemorySegment.copy(bytes, 0, ram, ValueLayout.JAVA_BYTE, loadGpa, bytes.length);
    }

    /**
     * Everything a vCPU needs in memory before its first instruction: the boot protocol's system
     * tables ({@link BootSetup#writeSystemTables}) and this image. Checks the image against RAM first,
     * so a refused image leaves RAM untouched. Registers come from {@link BootSetup#sregs} and
     * {@link BootSetup#regs}{@code (entry(), index, count)}.
     */
    public void installWithSystemTables(MemorySegment ram, long ramSize) {
        checkFits(ramSize);
        BootSetup.writeSystemTables(ram, ramSize);
        writeTo(ram, ramSize);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GuestImage g && g.loadGpa == loadGpa && g.entry == entry && Arrays.equals(g.bytes, bytes);
    }

    @Override
    public int hashCode() { return Arrays.hashCode(bytes) * 31 + Long.hashCode(loadGpa ^ entry); }

    @Override
    public String toString() {
        return "GuestImage[" + bytes.length + " bytes at " + hex(loadGpa) + ", entry " + hex(entry) + "]";
    }

    static String hex(long v) { return "0x" + Long.toHexString(v); }
}
