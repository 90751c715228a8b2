package dev.faultline.sys;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every Libc call goes through one syscall(2) downcall by number: each call is checked here against
 * what the kernel does, results and errno, so a wrong number or argument order shows.
 */
class LibcTest {

    @Test
    void shouldOpenReadWritePreadAndCloseAFile(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("data");
        Files.writeString(f, "hello, world");
        try (Arena a = Arena.ofConfined()) {
            int fd = Libc.check(Libc.open(f.toString(), Libc.O_RDWR | Libc.O_CLOEXEC, 0), "open", f.toString());
            MemorySegment buf = a.allocate(16);
            assertEquals(5, Libc.read(Libc.errnoSegment(), fd, buf, 5));
            assertEquals("hello", buf.getString(0).substring(0, 5));
            assertEquals(5, Libc.pread(fd, buf.address(), 5, 7));
            assertEquals("world", new String(buf.asSlice(0, 5).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.US_ASCII));
            MemorySegment out = a.allocateFrom("!!", StandardCharsets.US_ASCII);
            assertEquals(2, Libc.write(Libc.errnoSegment(), fd, out, 2)); // at offset 5, after the read
            assertEquals(0, Libc.close(fd));
            assertEquals("hello!!world", Files.readString(f));
        }
        assertEquals(-1, Libc.open(dir.resolve("missing").toString(), Libc.O_RDONLY, 0));
        assertEquals(Errno.ENOENT, Libc.lastErrno());
        assertEquals(-1, Libc.close(-1));
        assertEquals(Errno.EBADF, Libc.lastErrno());
    }

    @Test
    void shouldRefuseAHeapSegmentWhereTheKernelNeedsAnAddress() {
        MemorySegment heap = MemorySegment.ofArray(new byte[8]);
        assertThrows(IllegalArgumentException.class, () -> Libc.read(Libc.errnoSegment(), 0, heap, 8));
    }

    @Test
    void shouldMapProtectAdviseAndUnmapMemory() {
        long size = 4 * 4096;
        long addr = Libc.check(Libc.mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0),
                "mmap", "test");
        assertEquals(0, addr & 0xfff);
        MemorySegment m = MemorySegment.ofAddress(addr).reinterpret(size);
        m.set(ValueLayout.JAVA_LONG, 4096, 42);
        assertEquals(0, Libc.madvise(addr + 4096, 4096, Libc.MADV_DONTNEED));
        assertEquals(0, m.get(ValueLayout.JAVA_LONG, 4096)); // private anonymous: zero again
        assertEquals(0, Libc.mprotect(addr, size, Libc.PROT_READ));
        long[] iov = readBack(addr, 8);
        assertEquals(0, iov[0]);
        assertEquals(0, Libc.munmap(addr, size));
        assertEquals(-1, Libc.mprotect(addr, size, Libc.PROT_READ));
        assertEquals(Errno.ENOMEM, Libc.lastErrno()); // nothing mapped there now
        assertEquals(-1, Libc.munmap(addr + 1, 4096));
        assertEquals(Errno.EINVAL, Libc.lastErrno());
    }

    /** process_vm_readv on this process: a copy that reports EFAULT instead of crashing. */
    private static long[] readBack(long addr, long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment dst = a.allocate(bytes, 8);
            MemorySegment local = a.allocate(IovecLayout.SIZE), remote = a.allocate(IovecLayout.SIZE);
            local.set(ValueLayout.JAVA_LONG, 0, dst.address());
            local.set(ValueLayout.JAVA_LONG, 8, bytes);
            remote.set(ValueLayout.JAVA_LONG, 0, addr);
            remote.set(ValueLayout.JAVA_LONG, 8, bytes);
            MemorySegment capture = Libc.errnoSegment();
            assertEquals(bytes, Libc.processVmReadv(capture, Libc.getpid(), local, 1, remote, 1));
            remote.set(ValueLayout.JAVA_LONG, 0, 0x1000); // never mapped
            assertEquals(-1, Libc.processVmReadv(capture, Libc.getpid(), local, 1, remote, 1));
            assertEquals(Errno.EFAULT, Libc.errno(capture));
            return dst.toArray(ValueLayout.JAVA_LONG);
        }
    }

    @Test
    void shouldSizeAMemfdAndAllocateIt() {
        int fd = Libc.check(Libc.memfdCreate("libc-test", Libc.MFD_CLOEXEC), "memfd_create", "test");
        try {
            assertEquals(0, Libc.ftruncate(fd, 1 << 20));
            assertEquals(0, Libc.fallocate(fd, 0, 0, 8192));
            assertEquals(-1, Libc.ftruncate(fd, -1));
            assertEquals(Errno.EINVAL, Libc.lastErrno());
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void shouldWaitForAnEventfdWithPoll() {
        int fd = Libc.check(Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd", "test");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = Libc.errnoSegment();
            MemorySegment pfd = a.allocate(8, 4);
            pfd.set(ValueLayout.JAVA_INT, 0, fd);
            pfd.set(ValueLayout.JAVA_SHORT, 4, Libc.POLLIN);
            assertEquals(0, Libc.poll(capture, pfd, 1, 0)); // nothing yet
            MemorySegment v = a.allocate(8, 8);
            v.set(ValueLayout.JAVA_LONG, 0, 3);
            assertEquals(8, Libc.write(capture, fd, v, 8));
            assertEquals(1, Libc.poll(capture, pfd, 1, 1000));
            assertEquals(Libc.POLLIN, pfd.get(ValueLayout.JAVA_SHORT, 6));
            v.set(ValueLayout.JAVA_LONG, 0, 0);
            assertEquals(8, Libc.read(capture, fd, v, 8));
            assertEquals(3, v.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(-1, Libc.read(capture, fd, v, 8));
            assertEquals(Errno.EAGAIN, Libc.errno(capture));
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void shouldNameThreadsAndTheProcess() throws Exception {
        assertEquals(ProcessHandle.current().pid(), Libc.getpid());
        int mine = Libc.gettid();
        AtomicInteger other = new AtomicInteger();
        Thread t = Thread.ofPlatform().start(() -> other.set(Libc.gettid()));
        t.join();
        assertTrue(mine > 0 && other.get() > 0);
        assertNotEquals(mine, other.get());
        assertTrue(Files.exists(Path.of("/proc/self/task/" + mine)), "gettid names a thread of this process");
    }

    @Test
    void shouldSetOnlyTheCallingThreadsNiceValueAndAffinity() throws Exception {
        AtomicInteger nice = new AtomicInteger(-100), pin = new AtomicInteger(-100), tid = new AtomicInteger();
        String[] stat = new String[1];
        Thread t = Thread.ofPlatform().start(() -> {
            tid.set(Libc.gettid());
            nice.set(Libc.niceCurrentThread(5));
            pin.set(Libc.pinCurrentThread(0));
            try {
                stat[0] = Files.readString(Path.of("/proc/self/task/" + tid.get() + "/stat"));
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        t.join();
        assertEquals(0, nice.get());
        assertEquals(0, pin.get());
        String[] fields = stat[0].substring(stat[0].lastIndexOf(')') + 2).split(" ");
        assertEquals("5", fields[16], "nice is field 19 of /proc/PID/task/TID/stat");
        assertEquals(Errno.EINVAL, Libc.pinCurrentThread(-1));
        assertEquals(Errno.EINVAL, Libc.scheduleCurrentThread(Libc.SCHED_OTHER, 5)); // SCHED_OTHER takes priority 0 only
    }

    @Test
    void shouldBlockSendAndTakeASignalWithoutRunningAHandler() throws Exception {
        KickSignal.install();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment old = a.allocate(SigactionLayout.SIZE, 8);
            assertEquals(0, Libc.sigaction(KickSignal.SIGNAL, MemorySegment.NULL, old));
            assertEquals(Libc.SIG_IGN, old.get(ValueLayout.JAVA_LONG, SigactionLayout.HANDLER));
        }
        AtomicInteger taken = new AtomicInteger(-1), maskAfter = new AtomicInteger();
        long[] runMask = new long[1];
        Thread t = Thread.ofPlatform().start(() -> {
            runMask[0] = KickSignal.blockInCallingThread();
            MemorySegment capture = Libc.newErrnoSegment();
            KickSignal.send(capture, Libc.getpid(), Libc.gettid()); // blocked: stays pending, ignored or not
            taken.set(new KickSignal.Drainer(capture).drain());
            try (Arena a = Arena.ofConfined()) {
                MemorySegment cur = a.allocate(Libc.SIGSET_SIZE, 8);
                assertEquals(0, Libc.pthreadSigmask(Libc.SIG_BLOCK, MemorySegment.NULL, cur));
                maskAfter.set((cur.get(ValueLayout.JAVA_LONG, 0) & KickSignal.MASK_BIT) != 0 ? 1 : 0);
            }
        });
        t.join();
        assertEquals(1, taken.get(), "the one kick was pending and was taken");
        assertEquals(1, maskAfter.get(), "still blocked in that thread");
        assertEquals(0, runMask[0] & KickSignal.MASK_BIT, "the mask KVM_RUN gets leaves it open");
        try (Arena a = Arena.ofConfined()) {
            assertEquals(Errno.EINVAL, Libc.pthreadSigmask(99, a.allocate(Libc.SIGSET_SIZE, 8), MemorySegment.NULL));
        }
    }

    @Test
    void shouldReadTheKernelsCpuListsAndPinToTheAllowedCpus() throws Exception {
        assertArrayEquals(new int[] {0, 1}, Libc.parseCpuList("0-1"));
        assertArrayEquals(new int[] {2, 4, 5, 6}, Libc.parseCpuList(" 2,4-6\n"));
        assertArrayEquals(new int[] {3}, Libc.parseCpuList("3"));
        assertThrows(IllegalArgumentException.class, () -> Libc.parseCpuList("5-2"));
        assertThrows(NumberFormatException.class, () -> Libc.parseCpuList("a"));
        String[] stat = new String[1];
        Thread t = Thread.ofPlatform().start(() -> {
            Libc.pinCurrentThreadToCpuOf(1);
            try {
                stat[0] = Files.readString(Path.of("/proc/thread-self/status"));
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        t.join();
        String allowed = stat[0].lines().filter(l -> l.startsWith("Cpus_allowed_list:")).findFirst().orElseThrow();
        int[] process = Libc.parseCpuList(Files.readAllLines(Path.of("/proc/self/status")).stream()
                .filter(l -> l.startsWith("Cpus_allowed_list:")).findFirst().orElseThrow().substring("Cpus_allowed_list:".length()));
        assertEquals(1, Libc.parseCpuList(allowed.substring("Cpus_allowed_list:".length())).length, allowed);
        assertEquals(process[1 % process.length], Libc.parseCpuList(allowed.substring("Cpus_allowed_list:".length()))[0],
                "index 1 is the second CPU this process may use");
    }
}
