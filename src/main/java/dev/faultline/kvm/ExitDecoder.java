package dev.faultline.kvm;

import static dev.faultline.sys.KvmRunLayout.*;

import dev.faultline.hv.ExitReason;
import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.VcpuExit;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Turns the outcome of one KVM_RUN (its return value, errno and the kvm_run contents) into a
 * {@link VcpuExit}, implementing the memory-fault contract of uapi.md exactly:
 *
 * <pre>
 * ret  errno              exit_reason           result
 * ---  -----------------  --------------------  ------------------------------------------------
 *  0   -                  IO (2)                Io (port, size, direction, count, data slice)
 *  0   -                  MMIO (6), gpa outside Mmio (gpa, len, write, data slice)
 *                         every memslot
 *  0   -                  MMIO (6), gpa inside  MemoryFault(READ|WRITE, exact gpa, len, EFAULT,
 *                         a memslot             MMIO_IN_MEMSLOT): never a device access
 *  0   -                  HLT / SHUTDOWN        Hlt / Shutdown
 *  0   -                  FAIL_ENTRY (9)        FailEntry (hardware reason, cpu)
 *  0   -                  INTERNAL_ERROR (17)   InternalError (suberror, ndata clamped to 16, data)
 *  0   -                  HYPERCALL (3)         Hypercall (nr, args[6], flags)
 *  0   -                  anything else, incl.  Unknown (raw reason): 39 with ret 0 is not the
 *                         39 and SYSTEM_EVENT   contract, so its data is not trusted
 * -1   EFAULT/EHWPOISON   MEMORY_FAULT (39)     MemoryFault(flags, gpa, size, errno, KERNEL)
 * -1   EFAULT/EHWPOISON   anything else         ErrnoException: the exit data is stale, never read
 * -1   EINTR / EAGAIN     (not read)            Interrupted
 * -1   any other          (not read)            ErrnoException
 * </pre>
 *
 * For an MMIO exit inside a memslot the reported gpa is the exact faulting address and the size
 * the access length (what KVM put in kvm_run.mmio), not the page: the VMM computes the page
 * itself, and the exact value lets the backend complete the access after the VMM repairs the
 * memory (see {@link KvmVcpu}).
 *
 * <p>One decoder per vCPU: it fills that vCPU's own {@link VcpuExit.Set} and caches the data
 * slices of kvm_run, so decoding allocates nothing. Not thread-safe (one vCPU, one thread).
 */
public final class ExitDecoder {
    /** Whether a guest-physical address lies in an installed memslot. Must not allocate. */
    @FunctionalInterface
    public interface MemslotLookup {
        boolean inMemslot(long gpa);
    }

    private final MemorySegment run;
    private final MemslotLookup slots;
    private final VcpuExit.Set exits;
    private final String subject;
    private final MemorySegment mmioData;
    private final long[] words = new long[INTERNAL_DATA_WORDS];
    private MemorySegment ioData = MemorySegment.NULL;
    private long ioDataOffset = -1, ioDataLength = -1;

    /**
     * @param run     the vCPU's kvm_run area (the mmap'ed one, or a plain segment in tests)
     * @param subject names the vCPU in exceptions ("vm fd 5, vcpu 0 (fd 7)")
     */
    public ExitDecoder(MemorySegment run, MemslotLookup slots, VcpuExit.Set exits, String subject) {
        if (run.byteSize() < SIZE) throw new IllegalArgumentException("kvm_run area of " + run.byteSize() + " bytes is smaller than " + SIZE);
        this.run = run;
        this.slots = slots;
        this.exits = exits;
        this.subject = subject;
        this.mmioData = run.asSlice(MMIO_DATA, MMIO_DATA_SIZE);
    }

    /** The exit for KVM_RUN's {@code ret} and {@code errno} (errno is ignored when ret is 0). */
    public VcpuExit decode(int ret, int errno) {
        if (ret == 0) return decodeExit(run.get(ValueLayout.JAVA_INT, EXIT_REASON));
        if (ret != -1) throw new IllegalStateException("KVM_RUN on " + subject + " returned " + ret + ", neither 0 nor -1");
        return switch (errno) {
            case Errno.EFAULT, Errno.EHWPOISON -> {
                int reason = run.get(ValueLayout.JAVA_INT, EXIT_REASON);
                if (reason != ExitReason.MEMORY_FAULT) {
                    throw new ErrnoException("KVM_RUN", errno, subject,
                            "no memory-fault exit (exit_reason " + reason + " is stale), exit data not read");
                }
                VcpuExit.MemoryFault f = exits.memoryFault;
                f.fill(run.get(ValueLayout.JAVA_LONG, MEMORY_FAULT_FLAGS), run.get(ValueLayout.JAVA_LONG, MEMORY_FAULT_GPA),
                        run.get(ValueLayout.JAVA_LONG, MEMORY_FAULT_SIZE), errno, VcpuExit.MemoryFault.Origin.KERNEL);
                yield f;
            }
            case Errno.EINTR, Errno.EAGAIN -> exits.interrupted;
            default -> throw new ErrnoException("KVM_RUN", errno, subject);
        };
    }

    private VcpuExit decodeExit(int reason) {
        switch (reason) {
            case ExitReason.IO: {
                int direction = run.get(ValueLayout.JAVA_BYTE, IO_DIRECTION) & 0xff;
                int size = run.get(ValueLayout.JAVA_BYTE, IO_SIZE) & 0xff;
                int port = run.get(ValueLayout.JAVA_SHORT, IO_PORT) & 0xffff;
                int count = run.get(ValueLayout.JAVA_INT, IO_COUNT);
                long offset = run.get(ValueLayout.JAVA_LONG, IO_DATA_OFFSET);
                exits.io.fill(direction == IO_DIRECTION_OUT ? VcpuExit.Io.DIR_OUT : VcpuExit.Io.DIR_IN, size, port, count,
                        ioSlice(offset, (long) size * Integer.toUnsignedLong(count)));
                return exits.io;
            }
            case ExitReason.MMIO: {
                long gpa = run.get(ValueLayout.JAVA_LONG, MMIO_PHYS_ADDR);
                int len = run.get(ValueLayout.JAVA_INT, MMIO_LEN);
                boolean write = run.get(ValueLayout.JAVA_BYTE, MMIO_IS_WRITE) != 0;
                if (slots.inMemslot(gpa)) {
                    exits.memoryFault.fill(write ? MemoryFaultFlags.WRITE : MemoryFaultFlags.READ, gpa, len, Errno.EFAULT,
                            VcpuExit.MemoryFault.Origin.MMIO_IN_MEMSLOT);
                    return exits.memoryFault;
                }
                exits.mmio.fill(gpa, len, write, mmioData);
                return exits.mmio;
            }
            case ExitReason.HLT:
                return exits.hlt;
            case ExitReason.SHUTDOWN:
                return exits.shutdown;
            case ExitReason.FAIL_ENTRY:
                exits.failEntry.fill(run.get(ValueLayout.JAVA_LONG, FAIL_ENTRY_HARDWARE_REASON), run.get(ValueLayout.JAVA_INT, FAIL_ENTRY_CPU));
                return exits.failEntry;
            case ExitReason.INTERNAL_ERROR: {
                int suberror = run.get(ValueLayout.JAVA_INT, INTERNAL_SUBERROR);
                int ndata = Math.min(Math.max(run.get(ValueLayout.JAVA_INT, INTERNAL_NDATA), 0), INTERNAL_DATA_WORDS);
                for (int i = 0; i < ndata; i++) words[i] = run.get(ValueLayout.JAVA_LONG, INTERNAL_DATA + 8L * i);
                exits.internalError.fill(suberror, words, ndata, "");
                return exits.internalError;
            }
            case ExitReason.HYPERCALL: {
                long a = HYPERCALL_ARGS;
                exits.hypercall.fill(run.get(ValueLayout.JAVA_LONG, HYPERCALL_NR),
                        run.get(ValueLayout.JAVA_LONG, a), run.get(ValueLayout.JAVA_LONG, a + 8), run.get(ValueLayout.JAVA_LONG, a + 16),
                        run.get(ValueLayout.JAVA_LONG, a + 24), run.get(ValueLayout.JAVA_LONG, a + 32), run.get(ValueLayout.JAVA_LONG, a + 40),
                        (int) run.get(ValueLayout.JAVA_LONG, HYPERCALL_FLAGS));
                return exits.hypercall;
            }
            default:
                exits.unknown.fill(reason);
                return exits.unknown;
        }
    }

    /** The port-I/O data slice; made again only when KVM moves or resizes it (it practically never does). */
    private MemorySegment ioSlice(long offset, long length) {
        if (offset != ioDataOffset || length != ioDataLength) {
            if (offset < SIZE || length < 0 || offset + length > run.byteSize()) {
                throw new IllegalStateException("KVM_EXIT_IO on " + subject + " with data at [" + offset + ", +" + length
                        + ") outside the " + run.byteSize() + "-byte kvm_run area");
            }
            ioData = run.asSlice(offset, length);
            ioDataOffset = offset;
            ioDataLength = length;
        }
        return ioData;
    }
}
