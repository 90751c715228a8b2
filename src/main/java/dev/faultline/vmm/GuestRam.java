package dev.faultline.vmm;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Vm;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The guest's RAM: one host mapping for guest-physical [0, size), installed as two memslots,
 * {@link BootProtocol#SLOT_LOW} for [0, 1 MiB) (what the VMM places) and {@link BootProtocol#SLOT_MAIN}
 * for [1 MiB, size) (the image and its data), so the two can carry different flags.
 */
public final class GuestRam implements AutoCloseable {
    private final HostMemory memory;

    private GuestRam(HostMemory memory) {
        this.memory = memory;
    }

    public enum Backing { ANONYMOUS, MEMFD }

    public static GuestRam allocate(long size, Backing backing) {
        if (size < BootProtocol.IMAGE_MIN_GPA + 0x1000) {
            throw new IllegalArgumentException("guest RAM of " + size + " bytes is too small: at least 1 MiB + 4 KiB is needed");
        }
        if (size > BootProtocol.MAX_RAM) {
            throw new IllegalArgumentException("guest RAM of " + size + " bytes is larger than the supported "
                    + (BootProtocol.MAX_RAM >> 30) + " GiB");
        }
        if ((size & 0xfff) != 0) {
            throw new IllegalArgumentException("guest RAM size " + size + " is not a multiple of 4 KiB");
        }
        return new GuestRam(backing == Backing.MEMFD ? HostMemory.memfd("faultline-ram", size) : HostMemory.anonymous(size));
    }

    /** Installs the two RAM slots; {@code mainFlags} are the memslot flags of the main slot. */
    public void install(Vm vm, int lowFlags, int mainFlags) {
        vm.setMemorySlot(BootSetup.lowSlot(memory, lowFlags));
        vm.setMemorySlot(BootSetup.mainSlot(memory, mainFlags));
    }

    public HostMemory memory() { return memory; }
    public MemorySegment segment() { return memory.segment(); }
    public long size() { return memory.size(); }

    /** SHA-256 of all of guest RAM, lowercase hex. */
    public String sha256() {
        return sha256(segment());
    }

    public static String sha256(MemorySegment seg) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            long chunk = 1 << 20;
            for (long off = 0; off < seg.byteSize(); off += chunk) {
                ByteBuffer bb = seg.asSlice(off, Math.min(chunk, seg.byteSize() - off)).asByteBuffer();
                md.update(bb);
            }
            return HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 missing from the JDK", e);
        }
    }

    @Override
    public void close() {
        memory.close();
    }
}
