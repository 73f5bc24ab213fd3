# mpyx's first complete example: Count, AddX, Print.
from parafork.mpyx import EZ, F, Print


class Count(F):
    def setup(self, to):
        for n in range(1, to + 1):
            self.put(n)
        self.stop()


class AddX(F):
    def setup(self, amount=1):
        self.amount = amount

    def do(self, n):
        self.put(n + self.amount)


EZ(Count(5), AddX(10), Print()).start()
# prints 11 to 15 (the graph is joined when the program ends)
