from analytics.api import views
from thor.routes import slash_optional

urlpatterns = [
    *slash_optional("fo/strike-distribution", views.StrikeDistributionView.as_view(), name="fo-strike-distribution"),
    *slash_optional("fo/moneyness-series", views.MoneynessSeriesView.as_view(), name="fo-moneyness-series"),
    *slash_optional("futures/position-signals", views.PositionSignalsView.as_view(), name="futures-position-signals"),
    *slash_optional("futures/rollover-metrics", views.RolloverMetricsView.as_view(), name="futures-rollover-metrics"),
]
