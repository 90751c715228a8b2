package dev.faultline.pageserver;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.IovecLayout;
import dev.faultline.sys.Libc;
import dev.faultline.sys.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * What the Firecracker-protocol tests need on the VMM's side: a memory file with a known pattern,
 * guest regions mapped separately (as Firecracker maps each region), and reads of registered memory
 * made only from native code or by the kernel, never by a Java load (a Java thread waiting in a
 * userfault would hold every safepoint, and the handler serving it runs in this JVM).
 */
final class FirecrackerVmmSide {
    private FirecrackerVmmSide() {}

    static final long PAGE = 4096, MIB = 1 << 20;

    static void assumeUserfaultfd() {
        try {
            Userfaultfd.openAsFirecracker().close();
        } catch (ErrnoException e) {
            assumeTrue(false, "needs userfaultfd: " + e.getMessage());
        }
    }

    /** The word the memory file holds at {@code offset} (never zero). */
    static long word(long offset) {
        return (offset * 0x9E3779B97F4A7C15L) ^ 0x5bd1e995L | 1;
    }

    static void writeMemoryFile(Path file, long bytes) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate((int) MIB).order(ByteOrder.nativeOrder());
            for (long base = 0; base < bytes; base += MIB) {
                b.clear();
                for (long o = 0; o < MIB; o += 8) b.putLong(word(base + o));
                b.flip();
                while (b.hasRemaining()) ch.write(b, base + b.position());
            }
        }
    }

    /** Regions mapped one by one, of these sizes, at consecutive file offsets. */
    static List<HostMemory> mapRegions(long... sizes) {
        List<HostMemory> l = new ArrayList<>();
        for (long s : sizes) l.add(HostMemory.anonymous(s));
        return l;
    }

    static List<GuestRegionMapping> mappings(List<HostMemory> mems) {
        List<GuestRegionMapping> l = new ArrayList<>();
        long off = 0;
        for (HostMemory m : mems) {
            l.add(new GuestRegionMapping(m.address(), m.size(), off, PAGE));
            off += m.size();
        }
        return l;
    }

    /** Reads [address, +len) of this process with process_vm_readv (the kernel's access: a GUP fault) into {@code into}. */
    static void kernelRead(long address, MemorySegment into, long len) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment local = a.allocate(IovecLayout.SIZE, 8), remote = a.allocate(IovecLayout.SIZE, 8);
            local.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, into.address());
            local.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, len);
            remote.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, address);
            remote.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, len);
            MemorySegment capture = Libc.errnoSegment();
            long n = Libc.processVmReadv(capture, Libc.getpid(), local, 1, remote, 1);
            if (n != len) throw new IllegalStateException("process_vm_readv read " + n + " of " + len + " bytes: errno " + Libc.errno(capture));
        }
    }
}
