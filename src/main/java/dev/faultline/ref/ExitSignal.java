package dev.faultline.ref;

/**
 * Unwinds the interpreter from deep inside an instruction (a memory access, a fault) when that
 * instruction must end the run without completing: an MMIO read to be completed by userspace, a guest
 * exception, an emulation failure. The exit itself is already filled in the vCPU when this is thrown.
 * A single preallocated instance without a stack trace: throwing it allocates nothing.
 */
public final class ExitSignal extends RuntimeException {
    private static final long serialVersionUID = 1L;
    public static final ExitSignal INSTANCE = new ExitSignal();

    private ExitSignal() { super("vcpu exit", null, false, false); }
}
