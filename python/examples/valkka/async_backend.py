"""valkka's API documentation, "AsyncBackMessageProcess": a backend running asyncio, its c__
methods coroutines; the second form hands slow i/o to a task so the next message need not wait.
Only the import differs (and the frontend reads what the tasks send back)."""
import asyncio
from parafork.valkka import AsyncBackMessageProcess, MessageObject, safe_select


class MyProcess(AsyncBackMessageProcess):

    async def myStuff__(self, parameter=None):
        print("Regards from other side of the fork!  Got parameter", parameter, flush=True)
        await asyncio.sleep(0.2)  # DO SOME BLOCKING IO HERE
        print("Did that blocking io wait", flush=True)
        await self.send_out__(MessageObject("done", parameter=parameter))

    async def c__myStuff(self, parameter=None):
        asyncio.get_event_loop().create_task(self.myStuff__(parameter=parameter))

    def myStuff(self, parameter=None):
        self.sendMessageToBack(MessageObject(
            "myStuff", parameter=parameter))


p = MyProcess(name="my-process")
pipe = p.getPipe()  # a pipe to select on, or its getReadFd()
fd = pipe.getReadFd()
p.start()
p.myStuff(parameter="gotcha!")
p.myStuff(parameter="again!")  # handled at once: the first one's i/o runs in its task
done = set()
while len(done) < 2:
    r, _, _ = safe_select([fd], [], [], timeout=10)
    assert r, "no answer from the backend"
    done.add(pipe.recv()["parameter"])
print("both done:", sorted(done))
p.stop()
