package dev.faultline.hv;

/**
 * A virtual CPU. Threading rule: one thread at a time drives a vCPU (registers and {@link #run()});
 * only {@link #kick()} may be called from another thread.
 */
public interface Vcpu extends AutoCloseable {
    int id();

    Vm vm();

    /** Reads the registers into {@code into} (no allocation) and returns it. */
    Regs getRegs(Regs into);

    default Regs getRegs() { return getRegs(new Regs()); }

    void setRegs(Regs regs);

    Sregs getSregs();

    void setSregs(Sregs sregs);

    /**
     * KVM_RUN: enters the guest until the next exit. The returned object belongs to this vCPU and
     * stays valid only until the next call of {@code run()} (it is reused: the loop allocates nothing);
     * use {@link VcpuExit#record()} to keep it. Completion data for IN and MMIO reads, and hypercall
     * results, are written into the exit before the next {@code run()}.
     *
     * <p>A memory fault comes back as {@link VcpuExit.MemoryFault} carrying the errno (EFAULT or
     * EHWPOISON); every other failure of KVM_RUN throws {@link dev.faultline.sys.ErrnoException}.
     * A {@link #kick()} or a pending signal gives {@link VcpuExit.Interrupted}.
     */
    VcpuExit run();

    /** Asks a running (or the next) {@link #run()} to return {@link VcpuExit.Interrupted} soon. Any thread. */
    void kick();

    @Override void close();
}
