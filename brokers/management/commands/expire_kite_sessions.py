from django.core.management.base import BaseCommand

from brokers.services import kite_sessions_expire


class Command(BaseCommand):
    help = "Mark Kite connections whose session has passed 06:00 IST as expired."

    def handle(self, *args, **options):
        count = kite_sessions_expire()
        self.stdout.write(f"{count} Kite session(s) marked expired.")
