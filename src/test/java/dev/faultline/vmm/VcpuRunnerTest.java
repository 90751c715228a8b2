package dev.faultline.vmm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.guest.BootProtocol;
import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.sys.Errno;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class VcpuRunnerTest {

    private static VcpuResult runScript(ScriptedVcpu vcpu, MemoryFaultHandler handler) {
        VcpuRunner runner = new VcpuRunner(0, vcpu, handler, 100, null);
        runner.run();
        return runner.result();
    }

    @Test
    void shouldEndWithTheDoneCodeAndKeepConsoleAndReportsInOrder() {
        ScriptedVcpu v = new ScriptedVcpu()
                .out(BootProtocol.PORT_CONSOLE, 1, 'o').out(BootProtocol.PORT_CONSOLE, 1, 'k')
                .out(BootProtocol.PORT_REPORT, 4, 0xdeadbeefL).out(BootProtocol.PORT_REPORT, 4, 0x1234)
                .out(BootProtocol.PORT_DONE, 4, 7);
        VcpuResult r = runScript(v, MemoryFaultHandler.NONE);
        assertEquals(VcpuOutcome.DONE, r.outcome());
        assertEquals(7, r.doneCode());
        assertEquals("ok", r.console());
        assertArrayEquals(new long[] {0xdeadbeefL, 0x1234}, r.reports());
        assertEquals(5, r.exits().entries().size());
        assertEquals(5L, r.exitCounts().get("io"));
    }

    @Test
    void shouldCompleteInWithZeroAndHaltOnHlt() {
        ScriptedVcpu v = new ScriptedVcpu().in(0x60).hlt();
        VcpuResult r = runScript(v, MemoryFaultHandler.NONE);
        assertEquals(VcpuOutcome.HALTED, r.outcome());
        assertEquals(List.of(0L), v.inValuesSeen);
    }

    @Test
    void shouldStopWithAReportNamingGpaFlagsAndErrnoWhenNoHandlerResolvesAFault() {
        ScriptedVcpu v = new ScriptedVcpu().fault(0x345000, MemoryFaultFlags.WRITE, Errno.EHWPOISON);
        VcpuResult r = runScript(v, MemoryFaultHandler.NONE);
        assertEquals(VcpuOutcome.UNRESOLVED_MEMORY_FAULT, r.outcome());
        assertTrue(r.detail().contains("gpa 0x345000"), r.detail());
        assertTrue(r.detail().contains("write"), r.detail());
        assertTrue(r.detail().contains("EHWPOISON"), r.detail());
        assertEquals("memory_fault", r.exits().entries().get(0).exit().reason());
        assertTrue(r.exits().entries().get(0).resolution().startsWith("stopped"));
    }

    @Test
    void shouldStopAFaultThatKeepsComingBackInsteadOfRetryingForever() {
        ScriptedVcpu v = new ScriptedVcpu();
        for (int i = 0; i < VcpuRunner.MAX_SAME_FAULT + 1; i++) v.fault(0x400000, MemoryFaultFlags.READ, Errno.EFAULT);
        List<Long> resolved = new ArrayList<>();
        VcpuResult r = runScript(v, (cpu, f) -> { resolved.add(f.gpa()); return null; });
        assertEquals(VcpuOutcome.UNRESOLVED_MEMORY_FAULT, r.outcome());
        assertEquals(VcpuRunner.MAX_SAME_FAULT, resolved.size(), "the handler is consulted until the guard trips");
        assertEquals(VcpuRunner.MAX_SAME_FAULT + 1, v.runs);
        assertTrue(r.detail().contains("instead of retrying forever"), r.detail());
    }

    @Test
    void shouldResumeAfterAResolvedFaultAtANewAddressEachTime() {
        ScriptedVcpu v = new ScriptedVcpu();
        for (int i = 0; i < 20; i++) v.fault(0x400000 + i * 4096L, MemoryFaultFlags.WRITE, Errno.EFAULT);
        v.out(BootProtocol.PORT_DONE, 4, 0);
        VcpuResult r = runScript(v, (cpu, f) -> null);
        assertEquals(VcpuOutcome.DONE, r.outcome());
        assertEquals(20L, r.exitCounts().get("memory_fault"));
        assertEquals("resolved", r.exits().entries().get(3).resolution());
    }

    @Test
    void shouldReportATripleFaultAsShutdown() {
        VcpuResult r = runScript(new ScriptedVcpu().shutdown(), MemoryFaultHandler.NONE);
        assertEquals(VcpuOutcome.SHUTDOWN, r.outcome());
    }
}
