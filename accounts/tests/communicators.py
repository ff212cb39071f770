"""The tests' WebSocket communicator: channels' own, with a bound on how long a cancelled consumer may take to stop.

asgiref's communicator cancels the application when a receive times out or a disconnect outlasts `wait`, then
waits for it to stop without any bound. A consumer that does not stop on that cancel hung its test until
pytest-timeout killed the whole xdist worker (and the worker's other tests with it), saying only that the
test's thread waited. This one gives the consumer STOP_SECONDS, then fails the test with the stack of every
task still running on the loop: where the consumer was stuck.
"""

import asyncio
import importlib.util
import io
import sys
import types

# channels.testing imports daphne for its live-server test case. Thor serves with uvicorn (kiteconnect
# pins an autobahn daphne refuses), so daphne is absent: a stand-in for that one import lets the package
# load, and WebsocketCommunicator never touches it.
if importlib.util.find_spec("daphne") is None:
    daphne_testing = types.ModuleType("daphne.testing")
    daphne_testing.DaphneProcess = None  # type: ignore[attr-defined]
    sys.modules.update({"daphne": types.ModuleType("daphne"), "daphne.testing": daphne_testing})
from channels.testing import WebsocketCommunicator

STOP_SECONDS = 10


class BoundedCommunicator(WebsocketCommunicator):
    async def receive_output(self, timeout=1):
        if self.future.done():
            self.future.result()
        try:
            async with asyncio.timeout(timeout):
                return await self.output_queue.get()
        except TimeoutError:
            if self.future.done():
                self.future.result()
            else:
                self.future.cancel()
                await self._stopped()
            raise

    async def wait(self, timeout=1):
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self.future
                    self.future.result()
                except asyncio.CancelledError:
                    pass
        finally:
            if not self.future.done():
                self.future.cancel()
                await self._stopped()

    async def _stopped(self) -> None:
        done, _ = await asyncio.wait({self.future}, timeout=STOP_SECONDS)
        if done:
            if not self.future.cancelled():
                self.future.exception()  # retrieved: a consumer that failed as it stopped is not reported twice
            return
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.print_stack(file=stacks)
        raise AssertionError(
            f"The consumer did not stop within {STOP_SECONDS} s of its cancel. Tasks still running:\n{stacks.getvalue()}"
        )
