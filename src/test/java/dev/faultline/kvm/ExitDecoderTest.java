package dev.faultline.kvm;

import static dev.faultline.sys.KvmRunLayout.*;
import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.ExitReason;
import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.VcpuExit;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The memory-fault contract decoder on synthetic kvm_run contents: no /dev/kvm needed. */
class ExitDecoderTest {
    static final long SLOT_BASE = 0x100000, SLOT_END = 0x200000;
    static final String SUBJECT = "vm fd 5, vcpu 0 (fd 7)";

    final MemorySegment run = Arena.ofAuto().allocate(8192, 4096);
    final VcpuExit.Set exits = new VcpuExit.Set();
    final ExitDecoder decoder = new ExitDecoder(run, gpa -> gpa >= SLOT_BASE && gpa < SLOT_END, exits, SUBJECT);

    void reason(int r) { run.set(ValueLayout.JAVA_INT, EXIT_REASON, r); }

    void memoryFault(long flags, long gpa, long size) {
        reason(ExitReason.MEMORY_FAULT);
        run.set(ValueLayout.JAVA_LONG, MEMORY_FAULT_FLAGS, flags);
        run.set(ValueLayout.JAVA_LONG, MEMORY_FAULT_GPA, gpa);
        run.set(ValueLayout.JAVA_LONG, MEMORY_FAULT_SIZE, size);
    }

    void mmio(long gpa, int len, boolean write, long data) {
        reason(ExitReason.MMIO);
        run.set(ValueLayout.JAVA_LONG, MMIO_PHYS_ADDR, gpa);
        run.set(ValueLayout.JAVA_LONG, MMIO_DATA, data);
        run.set(ValueLayout.JAVA_INT, MMIO_LEN, len);
        run.set(ValueLayout.JAVA_BYTE, MMIO_IS_WRITE, (byte) (write ? 1 : 0));
    }

    void io(int direction, int size, int port, int count, long dataOffset) {
        reason(ExitReason.IO);
        run.set(ValueLayout.JAVA_BYTE, IO_DIRECTION, (byte) direction);
        run.set(ValueLayout.JAVA_BYTE, IO_SIZE, (byte) size);
        run.set(ValueLayout.JAVA_SHORT, IO_PORT, (short) port);
        run.set(ValueLayout.JAVA_INT, IO_COUNT, count);
        run.set(ValueLayout.JAVA_LONG, IO_DATA_OFFSET, dataOffset);
    }

    @Test
    void shouldReportMemoryFaultOnlyWithEfaultAndReason39() {
        memoryFault(MemoryFaultFlags.PRIVATE, 0x123000, 0x1000);
        VcpuExit exit = decoder.decode(-1, Errno.EFAULT);
        VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, exit);
        assertSame(exits.memoryFault, f);
        assertEquals(ExitReason.MEMORY_FAULT, f.reason());
        assertEquals(MemoryFaultFlags.PRIVATE, f.flags());
        assertTrue(f.isPrivate());
        assertEquals(0x123000, f.gpa());
        assertEquals(0x1000, f.size());
        assertEquals(Errno.EFAULT, f.errno());
        assertEquals(VcpuExit.MemoryFault.Origin.KERNEL, f.origin());
    }

    @Test
    void shouldKeepEhwpoisonAsTheMemoryFaultErrno() {
        memoryFault(0, 0x7000, 0x1000);
        VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, decoder.decode(-1, Errno.EHWPOISON));
        assertEquals(Errno.EHWPOISON, f.errno());
        assertEquals(0x7000, f.gpa());
        assertEquals("EHWPOISON", f.record().fields().get("errno"));
    }

    @Test
    void shouldThrowWithoutReadingExitDataWhenEfaultComesWithAStaleExitReason() {
        // Stale MMIO exit data from an earlier run, and memory_fault-shaped bytes in the union.
        mmio(0x150000, 4, true, 0x11);
        run.set(ValueLayout.JAVA_LONG, MEMORY_FAULT_GPA, 0xdead000);
        exits.memoryFault.fill(0, 0x5555, 1, 0, VcpuExit.MemoryFault.Origin.KERNEL);
        exits.mmio.fill(0x6666, 1, false, MemorySegment.NULL);
        ErrnoException e = assertThrows(ErrnoException.class, () -> decoder.decode(-1, Errno.EFAULT));
        assertEquals("KVM_RUN", e.call());
        assertEquals(Errno.EFAULT, e.errno());
        assertEquals(SUBJECT, e.subject());
        assertTrue(e.getMessage().contains("EFAULT (Bad address)"), e.getMessage());
        assertTrue(e.getMessage().contains("stale"), e.getMessage());
        assertEquals(0x5555, exits.memoryFault.gpa(), "memory-fault flyweight must stay untouched");
        assertEquals(0x6666, exits.mmio.gpa(), "mmio flyweight must stay untouched");
    }

    @Test
    void shouldNeverReportMemoryFaultForAnErrnoOtherThanEfaultOrEhwpoison() {
        memoryFault(MemoryFaultFlags.WRITE, 0x100000, 0x1000);
        for (int errno : new int[] {Errno.EINVAL, Errno.ENOMEM, Errno.EBADF, Errno.EIO, Errno.ENOSPC, Errno.EPERM}) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> decoder.decode(-1, errno));
            assertEquals(errno, e.errno());
            assertEquals("KVM_RUN", e.call());
            assertTrue(e.getMessage().contains(Errno.describe(errno)), e.getMessage());
        }
    }

    @Test
    void shouldReportInterruptedForEintrAndForEagain() {
        memoryFault(0, 0x100000, 0x1000); // stale: must not matter
        assertSame(exits.interrupted, decoder.decode(-1, Errno.EINTR));
        assertSame(exits.interrupted, decoder.decode(-1, Errno.EAGAIN));
        assertEquals(ExitReason.INTR, exits.interrupted.reason());
    }

    @Test
    void shouldReportExitReason39WithReturnZeroAsUnknownRatherThanTrustItsData() {
        memoryFault(0, 0x100000, 0x1000);
        VcpuExit.Unknown u = assertInstanceOf(VcpuExit.Unknown.class, decoder.decode(0, 0));
        assertEquals(39, u.reason());
        assertEquals("39", u.record().fields().get("raw_reason"));
    }

    @Test
    void shouldDecodeOutAsIoWithPortSizeAndDataAtDataOffset() {
        io(IO_DIRECTION_OUT, 4, 0xf4, 1, 4096);
        run.set(ValueLayout.JAVA_INT, 4096, 0xcafef00d);
        VcpuExit.Io io = assertInstanceOf(VcpuExit.Io.class, decoder.decode(0, 0));
        assertTrue(io.isOut());
        assertEquals(0xf4, io.port());
        assertEquals(4, io.size());
        assertEquals(1, io.count());
        assertEquals(0xcafef00dL, io.value());
        assertEquals(run.address() + 4096, io.data().address());
        assertEquals(4, io.data().byteSize());
    }

    @Test
    void shouldWriteInCompletionIntoKvmRunAtDataOffset() {
        io(IO_DIRECTION_IN, 2, 0x60, 3, 4096);
        VcpuExit.Io io = assertInstanceOf(VcpuExit.Io.class, decoder.decode(0, 0));
        assertFalse(io.isOut());
        assertEquals(3, io.count());
        io.completeIn(0xbeef);
        for (int i = 0; i < 3; i++) assertEquals((short) 0xbeef, run.get(ValueLayout.JAVA_SHORT, 4096 + 2L * i));
    }

    @Test
    void shouldReuseTheSameIoDataSliceAcrossExits() {
        io(IO_DIRECTION_OUT, 1, 0xe9, 1, 4096);
        MemorySegment first = ((VcpuExit.Io) decoder.decode(0, 0)).data();
        MemorySegment second = ((VcpuExit.Io) decoder.decode(0, 0)).data();
        assertSame(first, second);
    }

    @Test
    void shouldRejectIoDataOutsideTheKvmRunArea() {
        io(IO_DIRECTION_OUT, 4, 0xf4, 1025, 4096); // one element past the 8 KiB area
        assertThrows(IllegalStateException.class, () -> decoder.decode(0, 0));
    }

    @Test
    void shouldDecodeMmioOutsideMemslotsAsMmioWithItsDataInKvmRun() {
        mmio(0xfee00000L, 4, true, 0x12345678L);
        VcpuExit.Mmio m = assertInstanceOf(VcpuExit.Mmio.class, decoder.decode(0, 0));
        assertEquals(0xfee00000L, m.gpa());
        assertEquals(4, m.length());
        assertTrue(m.isWrite());
        assertEquals(0x12345678L, m.value());
        m.completeRead(0xaabbccddL);
        assertEquals(0xaabbccddL, run.get(ValueLayout.JAVA_INT, MMIO_DATA) & 0xffffffffL);
    }

    @Test
    void shouldReportMmioReadInsideAMemslotAsMemoryFaultNotAsDeviceAccess() {
        mmio(0x180ff8, 8, false, 0);
        exits.mmio.fill(0x1, 1, false, MemorySegment.NULL);
        VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, decoder.decode(0, 0));
        assertEquals(VcpuExit.MemoryFault.Origin.MMIO_IN_MEMSLOT, f.origin());
        assertEquals(MemoryFaultFlags.READ, f.flags());
        assertEquals(0x180ff8, f.gpa(), "exact faulting gpa, not the page");
        assertEquals(8, f.size(), "size is the access length");
        assertEquals(Errno.EFAULT, f.errno());
        assertEquals(0x1, exits.mmio.gpa(), "the mmio flyweight is not filled");
        assertEquals("mmio_in_memslot", f.record().fields().get("origin"));
    }

    @Test
    void shouldReportMmioWriteInsideAMemslotAsWriteMemoryFault() {
        mmio(SLOT_BASE, 2, true, 0xffff);
        VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, decoder.decode(0, 0));
        assertEquals(MemoryFaultFlags.WRITE, f.flags());
        assertEquals(SLOT_BASE, f.gpa());
        assertEquals(2, f.size());
    }

    @Test
    void shouldTreatTheByteAfterAMemslotAsMmio() {
        mmio(SLOT_END, 1, false, 0);
        assertInstanceOf(VcpuExit.Mmio.class, decoder.decode(0, 0));
    }

    @Test
    void shouldDecodeHltAndShutdown() {
        reason(ExitReason.HLT);
        assertSame(exits.hlt, decoder.decode(0, 0));
        reason(ExitReason.SHUTDOWN);
        assertSame(exits.shutdown, decoder.decode(0, 0));
    }

    @Test
    void shouldDecodeFailEntryWithHardwareReasonAndCpu() {
        reason(ExitReason.FAIL_ENTRY);
        run.set(ValueLayout.JAVA_LONG, FAIL_ENTRY_HARDWARE_REASON, 0x80000021L);
        run.set(ValueLayout.JAVA_INT, FAIL_ENTRY_CPU, 1);
        VcpuExit.FailEntry f = assertInstanceOf(VcpuExit.FailEntry.class, decoder.decode(0, 0));
        assertEquals(0x80000021L, f.hardwareReason());
        assertEquals(1, f.cpu());
    }

    @Test
    void shouldDecodeInternalErrorWithItsDataClampedToSixteenWords() {
        reason(ExitReason.INTERNAL_ERROR);
        run.set(ValueLayout.JAVA_INT, INTERNAL_SUBERROR, VcpuExit.InternalError.SUBERROR_EMULATION);
        run.set(ValueLayout.JAVA_INT, INTERNAL_NDATA, 3);
        for (int i = 0; i < 16; i++) run.set(ValueLayout.JAVA_LONG, INTERNAL_DATA + 8L * i, 100 + i);
        VcpuExit.InternalError e = assertInstanceOf(VcpuExit.InternalError.class, decoder.decode(0, 0));
        assertEquals(1, e.suberror());
        assertEquals(3, e.ndata());
        assertEquals(102, e.data(2));
        run.set(ValueLayout.JAVA_INT, INTERNAL_NDATA, 1000);
        assertEquals(16, ((VcpuExit.InternalError) decoder.decode(0, 0)).ndata());
        assertEquals(115, e.data(15));
    }

    @Test
    void shouldDecodeHypercallNumberArgumentsAndFlags() {
        reason(ExitReason.HYPERCALL);
        run.set(ValueLayout.JAVA_LONG, HYPERCALL_NR, 12);
        for (int i = 0; i < 6; i++) run.set(ValueLayout.JAVA_LONG, HYPERCALL_ARGS + 8L * i, 0x1000L * (i + 1));
        run.set(ValueLayout.JAVA_LONG, HYPERCALL_FLAGS, 1);
        VcpuExit.Hypercall h = assertInstanceOf(VcpuExit.Hypercall.class, decoder.decode(0, 0));
        assertEquals(VcpuExit.Hypercall.KVM_HC_MAP_GPA_RANGE, h.nr());
        assertEquals(0x1000, h.arg(0));
        assertEquals(0x6000, h.arg(5));
        assertEquals(1, h.flags());
    }

    @Test
    void shouldReportSystemEventAndUnmodelledReasonsAsUnknownWithTheRawReason() {
        for (int r : new int[] {ExitReason.SYSTEM_EVENT, ExitReason.EXCEPTION, ExitReason.DEBUG, 0, 1234}) {
            reason(r);
            VcpuExit.Unknown u = assertInstanceOf(VcpuExit.Unknown.class, decoder.decode(0, 0));
            assertEquals(r, u.reason());
        }
    }

    @Test
    void shouldRejectAReturnValueOtherThanZeroOrMinusOne() {
        assertThrows(IllegalStateException.class, () -> decoder.decode(1, 0));
    }

    // ---- the whole table: every errno against every exit reason ----

    static final int[] REASONS = {0, ExitReason.EXCEPTION, ExitReason.IO, ExitReason.HYPERCALL, ExitReason.HLT, ExitReason.MMIO,
            ExitReason.SHUTDOWN, ExitReason.FAIL_ENTRY, ExitReason.INTR, ExitReason.INTERNAL_ERROR, ExitReason.SYSTEM_EVENT,
            38, ExitReason.MEMORY_FAULT, 40, 0x7fff};
    static final int[] ERRNOS = {Errno.EFAULT, Errno.EHWPOISON, Errno.EINTR, Errno.EAGAIN, Errno.EINVAL, Errno.ENOMEM,
            Errno.EBADF, Errno.EIO, Errno.ENOSPC, Errno.EPERM, Errno.ENXIO, Errno.E2BIG};

    static Stream<Arguments> failedRuns() {
        List<Arguments> all = new ArrayList<>();
        for (int errno : ERRNOS) for (int reason : REASONS) all.add(Arguments.of(errno, reason));
        return all.stream();
    }

    @ParameterizedTest(name = "KVM_RUN -1 errno {0} exit_reason {1}")
    @MethodSource("failedRuns")
    void shouldDecodeEveryFailedRunExactlyAsTheContractSays(int errno, int reason) {
        memoryFault(MemoryFaultFlags.PRIVATE, 0x140000, 0x1000);
        run.set(ValueLayout.JAVA_INT, EXIT_REASON, reason);
        boolean faultErrno = errno == Errno.EFAULT || errno == Errno.EHWPOISON;
        if (faultErrno && reason == ExitReason.MEMORY_FAULT) {
            VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, decoder.decode(-1, errno));
            assertEquals(errno, f.errno());
            assertEquals(0x140000, f.gpa());
        } else if (errno == Errno.EINTR || errno == Errno.EAGAIN) {
            assertSame(exits.interrupted, decoder.decode(-1, errno));
        } else {
            ErrnoException e = assertThrows(ErrnoException.class, () -> decoder.decode(-1, errno));
            assertEquals(errno, e.errno());
            assertEquals("KVM_RUN", e.call());
        }
    }

    @ParameterizedTest(name = "KVM_RUN 0 exit_reason {0}")
    @MethodSource("successfulRuns")
    void shouldDecodeEverySuccessfulRunToItsKindAndNeverToAKernelMemoryFault(int reason) {
        memoryFault(0, 0x300000, 0x1000); // union bytes: mmio gpa 0x300000 lies outside the slot
        run.set(ValueLayout.JAVA_INT, EXIT_REASON, reason);
        run.set(ValueLayout.JAVA_LONG, IO_DATA_OFFSET, 4096); // IO needs a sane data offset
        VcpuExit exit = decoder.decode(0, 0);
        assertNotSame(exits.memoryFault, exit);
        Class<?> expected = switch (reason) {
            case ExitReason.IO -> VcpuExit.Io.class;
            case ExitReason.MMIO -> VcpuExit.Mmio.class;
            case ExitReason.HLT -> VcpuExit.Hlt.class;
            case ExitReason.SHUTDOWN -> VcpuExit.Shutdown.class;
            case ExitReason.FAIL_ENTRY -> VcpuExit.FailEntry.class;
            case ExitReason.INTERNAL_ERROR -> VcpuExit.InternalError.class;
            case ExitReason.HYPERCALL -> VcpuExit.Hypercall.class;
            default -> VcpuExit.Unknown.class;
        };
        assertInstanceOf(expected, exit);
        if (expected == VcpuExit.Unknown.class) assertEquals(reason, exit.reason());
    }

    static Stream<Integer> successfulRuns() {
        return java.util.Arrays.stream(REASONS).boxed();
    }
}
